//! Authentication: Basic credentials in the handshake buy a bearer token;
//! every other call presents the token. Comparisons of secrets take constant
//! time; no secret appears in an error or a log.
//!
//! What a flood of clients can cost is bounded: failed sign-ins slow down
//! further attempts on the same user name and from the same address (the
//! request waits, not the server), at most `max_tokens` tokens live at once,
//! each until it has been unused for `idle_timeout` or is `lifetime` old, and
//! a token's session is built by its first statement, not by the handshake.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use tokio::sync::OnceCell;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::access::{AuditAction, AuditEvent};
use crate::error::{Error, Result};
use crate::session::Session;

/// Basic credentials in the standard alphabet, padded or not: RFC 7617 pads,
/// the ADBC Flight SQL driver does not.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Who may connect.
#[derive(Debug, Clone)]
pub enum Users {
    /// No authentication at all (`--insecure-no-auth`): local play only.
    Anyone,
    /// Sign-in as a user of the warehouse (`CREATE USER`); these `user →
    /// password` pairs are made admins (or given these passwords) at start.
    Passwords(HashMap<String, String>),
}

impl Users {
    /// Reads `user:password` lines (blank lines and `#` comments skipped).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, password) = line.split_once(':').ok_or_else(|| {
                Error::Invalid(format!(
                    "{} line {}: expected user:password",
                    path.display(),
                    i + 1
                ))
            })?;
            users.insert(user.to_string(), password.to_string());
        }
        Ok(Users::Passwords(users))
    }

    /// Makes the named users admins of the warehouse, with these passwords.
    pub async fn seed(&self, principals: &crate::access::Principals) -> Result<()> {
        if let Users::Passwords(seeds) = self {
            let admin = [crate::access::ADMIN_ROLE.to_string()];
            for (user, password) in seeds {
                principals.seed_user(user, password, &admin).await?;
            }
        }
        Ok(())
    }
}

/// A random secret: 32 bytes from the OS, hex-encoded.
pub fn random_secret() -> String {
    let mut out = String::with_capacity(64);
    for _ in 0..2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out
}

/// The `authorization` header's value after `scheme` (`"Basic "`, `"Bearer "`).
fn credentials<'a>(
    metadata: &'a MetadataMap,
    scheme: &str,
    missing: &'static str,
) -> std::result::Result<&'a str, Status> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Status::unauthenticated(missing))?;
    header
        .strip_prefix(scheme)
        .ok_or_else(|| Status::unauthenticated(format!("expected {scheme}authentication")))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// How long tokens live and how many may.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// Age past which a token is refused, however much it is used.
    pub lifetime: Duration,
    /// A token unused this long expires.
    pub idle_timeout: Duration,
    /// Tokens alive at once; a sign-in past it evicts the least recently used
    /// token of the user holding the most, so one user signing in again and
    /// again pushes out its own tokens, not other users'.
    pub max_tokens: usize,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            lifetime: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            max_tokens: 4096,
        }
    }
}

/// How failed sign-ins slow down the next attempts.
#[derive(Debug, Clone)]
pub struct SignInDelay {
    /// The wait after one failure; it doubles with each further failure.
    pub base: Duration,
    /// The longest wait. An attempt that would wait longer (many attempts at
    /// once on the same name or address) is refused with RESOURCE_EXHAUSTED.
    pub max: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
    /// User names and addresses remembered at once; past it the oldest are
    /// forgotten first, so a flood of made-up names cannot grow memory.
    pub max_entries: usize,
}

impl Default for SignInDelay {
    fn default() -> Self {
        SignInDelay {
            base: Duration::from_millis(100),
            max: Duration::from_secs(4),
            forget_after: Duration::from_secs(15 * 60),
            max_entries: 16384,
        }
    }
}

/// Who is calling: the user a token was issued to (`None` on a server without
/// authentication) and the session the token drives, built on first use.
#[derive(Clone)]
pub struct Caller {
    user: Option<Arc<str>>,
    /// Where the caller signed in from, for the audit log.
    client: Arc<str>,
    session: Arc<OnceCell<Session>>,
    /// What the session is kept under, for `CloseSession`.
    key: SessionKey,
}

/// Where a caller's session is kept: under its token, or (without sign-in)
/// under its connection's address, or shared by requests whose address the
/// transport does not tell.
#[derive(Debug, Clone)]
enum SessionKey {
    Token(String),
    Connection(SocketAddr),
    Shared,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("user", &self.user).finish()
    }
}

impl Caller {
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

struct Grant {
    /// The token's second half, compared in constant time; the first half
    /// only finds the grant.
    secret: String,
    user: Arc<str>,
    /// Where the token was issued to.
    client: Arc<str>,
    issued: Instant,
    last_used: Instant,
    session: Arc<OnceCell<Session>>,
}

/// A client's address as the audit log names it.
fn client_name(address: Option<IpAddr>) -> Arc<str> {
    match address {
        Some(address) => Arc::from(address.to_string().as_str()),
        None => Arc::from("unknown"),
    }
}

/// Why a token is no longer valid.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    Lifetime,
    Idle,
    Evicted,
    /// The client closed its session (Flight's `CloseSession`).
    Closed,
}

/// Live tokens by id, and why the ids removed lately went (to tell a client
/// that comes back with one).
#[derive(Default)]
struct Grants {
    by_id: HashMap<String, Grant>,
    gone: HashMap<String, Gone>,
    gone_order: VecDeque<String>,
    swept: Option<Instant>,
}

impl Grants {
    /// Removes a grant, remembering why among the last `remember` removed.
    fn remove(&mut self, id: &str, why: Gone, remember: usize) -> Option<Grant> {
        let grant = self.by_id.remove(id)?;
        if self.gone.insert(id.to_string(), why).is_none() {
            self.gone_order.push_back(id.to_string());
        }
        while self.gone_order.len() > remember {
            if let Some(old) = self.gone_order.pop_front() {
                self.gone.remove(&old);
            }
        }
        Some(grant)
    }
}

/// Users, issued tokens and the session each token drives.
pub struct Authenticator {
    users: Users,
    policy: TokenPolicy,
    grants: Mutex<Grants>,
    throttle: Throttle,
    /// The server's own session: the template of every client's.
    shared: Session,
    /// Without sign-in (`--insecure-no-auth`): a session per client
    /// connection, so one client's `USE` or `SET` never changes another's.
    connections: Mutex<HashMap<SocketAddr, Connection>>,
    /// ... and for a request whose address the transport does not tell.
    anyone: Arc<OnceCell<Session>>,
}

/// The session of one unauthenticated connection.
struct Connection {
    last_used: Instant,
    session: Arc<OnceCell<Session>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// Characters in each half of a token.
const TOKEN_HALF: usize = 32;

impl Authenticator {
    pub fn new(users: Users, policy: TokenPolicy, delay: SignInDelay, shared: Session) -> Self {
        Authenticator {
            users,
            policy,
            grants: Mutex::new(Grants::default()),
            throttle: Throttle::new(delay),
            connections: Mutex::new(HashMap::new()),
            anyone: Arc::new(OnceCell::new()),
            shared,
        }
    }

    /// Checks `authorization: Basic ...` from `client` and issues a token.
    /// After failures on this name or from this address the check waits its
    /// turn first (this request only), or is refused when the wait is too long.
    pub async fn handshake(
        &self,
        metadata: &MetadataMap,
        client: Option<IpAddr>,
    ) -> std::result::Result<String, Status> {
        if matches!(self.users, Users::Anyone) {
            return Ok(String::new());
        }
        let encoded = credentials(
            metadata,
            "Basic ",
            "missing credentials: use Basic authentication",
        )?;
        let decoded = BASIC
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        let pair = decoded.as_deref().and_then(|d| d.split_once(':'));
        let keys = self.throttle.keys(pair.map(|(user, _)| user), client);
        match self.throttle.turn(&keys, Instant::now()) {
            Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Ok(_) => {}
            Err(retry) => {
                return Err(Status::resource_exhausted(format!(
                    "too many failed sign-ins for this user name or from this address: try again in {:.1} s",
                    retry.as_secs_f64()
                )));
            }
        }
        let Some((user, password)) = pair else {
            self.throttle.failed(&keys, Instant::now());
            return Err(Status::unauthenticated(
                "malformed Basic credentials: expected base64 of user:password",
            ));
        };
        // An unknown name costs the time of a wrong password.
        let signed_in = self
            .shared
            .store()
            .principals()
            .sign_in(user, password)
            .await
            .map_err(super::status::to_status)?;
        let audit = |action, allowed| {
            let event = AuditEvent {
                user: user.to_string(),
                client: client_name(client).to_string(),
                action,
                object: String::new(),
                detail: String::new(),
                allowed,
            };
            let log = self.shared.store().audit().clone();
            async move {
                if let Err(e) = log.record(event).await {
                    tracing::error!(error = %e, "cannot write the audit log");
                }
            }
        };
        let Some(principal) = signed_in else {
            // The wait before the next attempt counts from the reply, after
            // the audit log's write.
            audit(AuditAction::SignInFailed, false).await;
            self.throttle.failed(&keys, Instant::now());
            return Err(Status::unauthenticated("invalid user name or password"));
        };
        audit(AuditAction::SignIn, true).await;
        let name = principal.user;
        self.throttle.succeeded(&keys);
        Ok(self.issue(Arc::from(name.as_str()), client_name(client)))
    }

    /// A new token for `user`; its session waits for its first statement.
    fn issue(&self, user: Arc<str>, client: Arc<str>) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let token = format!("{id}{secret}");
        let now = Instant::now();
        let mut freed = Vec::new();
        {
            let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
            if grants.by_id.len() >= self.policy.max_tokens || self.sweep_due(&grants, now) {
                freed = self.sweep(&mut grants, now);
            }
            while grants.by_id.len() >= self.policy.max_tokens.max(1) {
                match least_recently_used(&grants) {
                    Some(id) => freed.extend(grants.remove(&id, Gone::Evicted, self.remember())),
                    None => break,
                }
            }
            grants.by_id.insert(
                id,
                Grant {
                    secret,
                    user,
                    client,
                    issued: now,
                    last_used: now,
                    session: Arc::new(OnceCell::new()),
                },
            );
        }
        // Sessions are dropped out of the lock.
        drop(freed);
        token
    }

    /// The caller of a request: the user and session of its bearer token.
    pub fn authorize(
        &self,
        metadata: &MetadataMap,
        remote: Option<SocketAddr>,
    ) -> std::result::Result<Caller, Status> {
        if matches!(self.users, Users::Anyone) {
            return Ok(Caller {
                user: None,
                client: client_name(remote.map(|r| r.ip())),
                session: self.connection_session(remote),
                key: remote.map_or(SessionKey::Shared, SessionKey::Connection),
            });
        }
        let token = credentials(
            metadata,
            "Bearer ",
            "missing bearer token: authenticate with a handshake first",
        )?;
        let invalid = || Status::unauthenticated("invalid or expired token: authenticate again");
        let (id, secret) = match (token.get(..TOKEN_HALF), token.get(TOKEN_HALF..)) {
            (Some(id), Some(secret)) if secret.len() == TOKEN_HALF => (id, secret),
            _ => return Err(invalid()),
        };
        let now = Instant::now();
        let mut freed = Vec::new();
        let result = {
            let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
            let result = match grants.by_id.get_mut(id) {
                Some(grant) if constant_time_eq(grant.secret.as_bytes(), secret.as_bytes()) => {
                    match self.expiry(grant, now) {
                        None => {
                            grant.last_used = now;
                            Ok(Caller {
                                user: Some(grant.user.clone()),
                                client: grant.client.clone(),
                                session: grant.session.clone(),
                                key: SessionKey::Token(id.to_string()),
                            })
                        }
                        Some(why) => {
                            freed.extend(grants.remove(id, why, self.remember()));
                            Err(self.refusal(why))
                        }
                    }
                }
                Some(_) => Err(invalid()),
                None => match grants.gone.get(id) {
                    Some(why) => Err(self.refusal(*why)),
                    None => Err(invalid()),
                },
            };
            // After the lookup, so that an expired token is told why.
            if self.sweep_due(&grants, now) {
                freed.extend(self.sweep(&mut grants, now));
            }
            result
        };
        drop(freed);
        result
    }

    /// Ends the caller's session (Flight's `CloseSession`, which the ADBC
    /// driver sends when a connection closes): its token is refused from now
    /// on, saying so, and its settings, temporary tables and kept plans
    /// go. Without sign-in the connection's session is forgotten, and its
    /// next request starts a new one. False for the session shared by
    /// requests without an address, which is not the caller's to close.
    pub fn close(&self, caller: &Caller) -> bool {
        let closed = match &caller.key {
            SessionKey::Token(id) => {
                let mut grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
                grants
                    .remove(id, Gone::Closed, self.remember())
                    .map(|grant| grant.session)
            }
            SessionKey::Connection(remote) => {
                let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
                connections.remove(remote).map(|c| c.session)
            }
            SessionKey::Shared => return false,
        };
        // Dropped out of the lock; a request still running keeps its own.
        drop(closed);
        true
    }

    /// The caller's session, built by its first use; refused when its user
    /// was dropped since signing in (by this process or another).
    pub async fn session(&self, caller: &Caller) -> std::result::Result<Session, Status> {
        let session = caller
            .session
            // Same limits and file policy as the server's own session.
            .get_or_try_init(|| async {
                let session = self.shared.fork().await?.with_client(&caller.client);
                match &caller.user {
                    // Acts as the signed-in user, with their roles now.
                    Some(user) => {
                        let principal = self.shared.store().principals().principal(user).await?;
                        Ok(session.with_principal(principal))
                    }
                    None => Ok(session),
                }
            })
            .await
            .cloned()
            .map_err(super::status::to_status)?;
        if caller.user.is_some() {
            session
                .principal()
                .await
                .map_err(super::status::to_status)?;
        }
        Ok(session)
    }

    /// The session of an unauthenticated client at `remote`, as bounded as
    /// tokens are: at most `max_tokens` connections are remembered (the least
    /// recently used goes first) and an idle one is forgotten.
    fn connection_session(&self, remote: Option<SocketAddr>) -> Arc<OnceCell<Session>> {
        let Some(remote) = remote else {
            return self.anyone.clone();
        };
        let now = Instant::now();
        let mut freed = Vec::new();
        let session = {
            let mut connections = self.connections.lock().unwrap_or_else(|e| e.into_inner());
            if !connections.contains_key(&remote) {
                let idle = self.policy.idle_timeout;
                let expired: Vec<SocketAddr> = connections
                    .iter()
                    .filter(|(_, c)| now.duration_since(c.last_used) >= idle)
                    .map(|(addr, _)| *addr)
                    .collect();
                freed.extend(expired.iter().filter_map(|a| connections.remove(a)));
                while connections.len() >= self.policy.max_tokens.max(1) {
                    let oldest = connections
                        .iter()
                        .min_by_key(|(_, c)| c.last_used)
                        .map(|(addr, _)| *addr);
                    match oldest.and_then(|a| connections.remove(&a)) {
                        Some(gone) => freed.push(gone),
                        None => break,
                    }
                }
            }
            let connection = connections.entry(remote).or_insert_with(|| Connection {
                last_used: now,
                session: Arc::new(OnceCell::new()),
            });
            connection.last_used = now;
            connection.session.clone()
        };
        // Sessions are dropped out of the lock.
        drop(freed);
        session
    }

    /// Why `grant` is no longer valid, if it is not.
    fn expiry(&self, grant: &Grant, now: Instant) -> Option<Gone> {
        if now.duration_since(grant.issued) >= self.policy.lifetime {
            Some(Gone::Lifetime)
        } else if now.duration_since(grant.last_used) >= self.policy.idle_timeout {
            Some(Gone::Idle)
        } else {
            None
        }
    }

    /// What a client presenting a token that went is told.
    fn refusal(&self, why: Gone) -> Status {
        let why = match why {
            Gone::Lifetime => format!(
                "token expired (older than its lifetime of {} s)",
                self.policy.lifetime.as_secs_f64()
            ),
            Gone::Idle => format!(
                "token expired (unused for longer than {} s)",
                self.policy.idle_timeout.as_secs_f64()
            ),
            Gone::Evicted => format!(
                "token evicted: the server keeps at most {} signed-in tokens and this one was the least recently used",
                self.policy.max_tokens
            ),
            Gone::Closed => "session closed by the client (CloseSession)".to_string(),
        };
        Status::unauthenticated(format!("{why}: authenticate again"))
    }

    /// How many removed tokens are remembered, to say why they went.
    fn remember(&self) -> usize {
        self.policy.max_tokens.max(1024)
    }

    /// Expired grants are looked for at most every so often, so that a call
    /// does not walk every token.
    fn sweep_due(&self, grants: &Grants, now: Instant) -> bool {
        let every = (self.policy.idle_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(60));
        grants
            .swept
            .is_none_or(|at| now.duration_since(at) >= every)
    }

    /// Removes expired grants; returns them, to be dropped out of the lock.
    fn sweep(&self, grants: &mut Grants, now: Instant) -> Vec<Grant> {
        grants.swept = Some(now);
        let expired: Vec<(String, Gone)> = grants
            .by_id
            .iter()
            .filter_map(|(id, grant)| Some((id.clone(), self.expiry(grant, now)?)))
            .collect();
        expired
            .into_iter()
            .filter_map(|(id, why)| grants.remove(&id, why, self.remember()))
            .collect()
    }

    /// Live tokens (for tests and diagnostics).
    pub fn live_tokens(&self) -> usize {
        self.grants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .len()
    }
}

/// The least recently used grant of the user holding the most.
fn least_recently_used(grants: &Grants) -> Option<String> {
    let mut held: HashMap<&str, usize> = HashMap::new();
    for grant in grants.by_id.values() {
        *held.entry(&grant.user).or_default() += 1;
    }
    let (&user, _) = held.iter().max_by_key(|(_, n)| **n)?;
    grants
        .by_id
        .iter()
        .filter(|(_, grant)| &*grant.user == user)
        .min_by_key(|(_, grant)| grant.last_used)
        .map(|(id, _)| id.clone())
}

/// What failed sign-ins are counted against: the user name tried (hashed:
/// names are the client's and may be long) and the client's address (an
/// IPv6 client by its /64, which one subscriber usually holds whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Name(u64),
    Address(IpAddr),
}

#[derive(Debug)]
struct Strikes {
    /// Attempts since the last success, the one being checked included.
    failures: u32,
    /// When the next attempt may be checked.
    not_before: Instant,
    last_attempt: Instant,
}

/// Failed sign-ins by user name and by address, and the waits they impose.
struct Throttle {
    policy: SignInDelay,
    names: std::hash::RandomState,
    strikes: Mutex<HashMap<Key, Strikes>>,
}

impl Throttle {
    fn new(policy: SignInDelay) -> Self {
        Throttle {
            policy,
            names: std::hash::RandomState::new(),
            strikes: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self, name: Option<&str>, client: Option<IpAddr>) -> Vec<Key> {
        let mut keys = Vec::with_capacity(2);
        if let Some(name) = name {
            keys.push(Key::Name(self.names.hash_one(name)));
        }
        if let Some(ip) = client {
            keys.push(Key::Address(match ip {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(std::net::Ipv6Addr::from(
                        u128::from(v6) & !((1u128 << 64) - 1),
                    )),
                },
                v4 => v4,
            }));
        }
        keys
    }

    /// The wait after `failures` failures in a row.
    fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = (failures - 1).min(31);
        self.policy
            .base
            .saturating_mul(1 << doublings)
            .min(self.policy.max)
    }

    fn remembered(&self, strikes: &Strikes, now: Instant) -> bool {
        now.duration_since(strikes.last_attempt) < self.policy.forget_after
    }

    /// This attempt's turn: how long it waits before its password is checked.
    /// The attempt counts as a failure from now until it succeeds, so that
    /// attempts at once queue one growing delay apart, as if one followed
    /// another; one that would wait longer than the longest delay is refused
    /// unchecked and uncounted (`Err`: when to try again).
    fn turn(&self, keys: &[Key], now: Instant) -> std::result::Result<Duration, Duration> {
        let mut strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        let start = keys
            .iter()
            .filter_map(|k| strikes.get(k).filter(|s| self.remembered(s, now)))
            .map(|s| s.not_before)
            .fold(now, Instant::max);
        let wait = start.duration_since(now);
        if wait > self.policy.max {
            return Err(wait - self.policy.max);
        }
        for key in keys {
            if !strikes.contains_key(key) && strikes.len() >= self.policy.max_entries.max(1) {
                strikes
                    .retain(|_, s| now.duration_since(s.last_attempt) < self.policy.forget_after);
                if strikes.len() >= self.policy.max_entries.max(1)
                    && let Some(oldest) = strikes
                        .iter()
                        .min_by_key(|(_, s)| s.last_attempt)
                        .map(|(k, _)| *k)
                {
                    strikes.remove(&oldest);
                }
            }
            let s = strikes.entry(*key).or_insert(Strikes {
                failures: 0,
                not_before: now,
                last_attempt: now,
            });
            if !self.remembered(s, now) {
                s.failures = 0;
                s.not_before = now;
            }
            s.failures = s.failures.saturating_add(1);
            s.last_attempt = now;
            s.not_before = s.not_before.max(start + self.delay(s.failures));
        }
        Ok(wait)
    }

    /// A failed check: the next attempt waits at least a delay from now.
    fn failed(&self, keys: &[Key], now: Instant) {
        let mut strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some(s) = strikes.get_mut(key) {
                s.last_attempt = now;
                s.not_before = s.not_before.max(now + self.delay(s.failures));
            }
        }
    }

    /// A correct password clears its user name's failures. Its address only
    /// takes back this attempt and keeps its failures until they are
    /// forgotten: a valid account must not let one address try other users'
    /// passwords at full speed.
    fn succeeded(&self, keys: &[Key]) {
        let mut strikes = self.strikes.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            let clear = match key {
                Key::Name(_) => true,
                Key::Address(_) => strikes.get_mut(key).is_some_and(|s| {
                    s.failures = s.failures.saturating_sub(1);
                    s.failures == 0
                }),
            };
            if clear {
                strikes.remove(key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.strikes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(base_ms: u64, max_ms: u64) -> SignInDelay {
        SignInDelay {
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
            forget_after: Duration::from_secs(60),
            max_entries: 100,
        }
    }

    fn basic(metadata: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(
            "authorization",
            format!("Basic {metadata}").parse().expect("header"),
        );
        map
    }

    async fn authenticator(policy: TokenPolicy) -> (tempfile::TempDir, Authenticator) {
        let dir = tempfile::tempdir().expect("tempdir");
        let session = Session::open(dir.path()).await.expect("session");
        let users = Users::Passwords(HashMap::from([
            ("alice".to_string(), "s3cret".to_string()),
            ("bob".to_string(), "hunter2".to_string()),
        ]));
        users
            .seed(session.store().principals())
            .await
            .expect("seed users");
        let auth = Authenticator::new(users, policy, delay(1, 4), session);
        (dir, auth)
    }

    fn bearer(token: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        map
    }

    #[test]
    fn basic_credentials_decode_padded_or_not() {
        for text in ["Ym9iOmh1bnRlcjI=", "Ym9iOmh1bnRlcjI"] {
            assert_eq!(BASIC.decode(text).expect(text), b"bob:hunter2");
        }
        assert!(BASIC.decode("Ym9iOmh1bnRlcjI=x").is_err());
    }

    #[test]
    fn failures_double_the_wait_up_to_the_cap() {
        let throttle = Throttle::new(delay(100, 400));
        let keys = throttle.keys(Some("alice"), Some("10.0.0.1".parse().expect("ip")));
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = throttle.turn(&keys, now).expect("admitted");
            now += wait;
            waits.push(wait.as_millis());
            throttle.failed(&keys, now);
        }
        assert_eq!(waits, [0, 100, 200, 400, 400, 400]);
    }

    #[test]
    fn attempts_at_once_queue_and_past_the_cap_are_refused() {
        let throttle = Throttle::new(delay(100, 400));
        let keys = throttle.keys(Some("alice"), None);
        let now = Instant::now();
        // As if each followed the failure of the one before.
        let waits: Vec<_> = (0..5).map(|_| throttle.turn(&keys, now)).collect();
        assert_eq!(
            waits,
            [
                Ok(Duration::ZERO),
                Ok(Duration::from_millis(100)),
                Ok(Duration::from_millis(300)),
                Err(Duration::from_millis(300)),
                Err(Duration::from_millis(300)),
            ]
        );
    }

    #[test]
    fn success_clears_the_name_not_the_address() {
        let throttle = Throttle::new(delay(100, 400));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let alice = throttle.keys(Some("alice"), Some(ip));
        let mut now = Instant::now();
        assert_eq!(throttle.turn(&alice, now), Ok(Duration::ZERO));
        throttle.failed(&alice, now);
        now += throttle.turn(&alice, now).expect("admitted");
        throttle.succeeded(&alice);
        let carol_elsewhere = throttle.keys(Some("carol"), Some("10.0.0.2".parse().expect("ip")));
        assert_eq!(throttle.turn(&carol_elsewhere, now), Ok(Duration::ZERO));
        let alice_elsewhere = throttle.keys(Some("alice"), Some("10.0.0.4".parse().expect("ip")));
        assert_eq!(throttle.turn(&alice_elsewhere, now), Ok(Duration::ZERO));
        // The address still waits out its failure and the attempt after it.
        let dan_same_address = throttle.keys(Some("dan"), Some(ip));
        assert_eq!(
            throttle.turn(&dan_same_address, now),
            Ok(Duration::from_millis(200))
        );
        // A first sign-in that succeeds leaves nothing behind.
        let dave = throttle.keys(Some("dave"), Some("10.0.0.3".parse().expect("ip")));
        let before = throttle.len();
        assert_eq!(throttle.turn(&dave, now), Ok(Duration::ZERO));
        throttle.succeeded(&dave);
        assert_eq!(throttle.len(), before);
    }

    #[test]
    fn failures_are_forgotten_and_bounded() {
        let throttle = Throttle::new(delay(100, 400));
        let now = Instant::now();
        for i in 0..1000 {
            let keys = throttle.keys(Some(&format!("user{i}")), None);
            assert_eq!(throttle.turn(&keys, now), Ok(Duration::ZERO));
            throttle.failed(&keys, now);
        }
        assert_eq!(throttle.len(), 100);
        let later = now + Duration::from_secs(61);
        let keys = throttle.keys(Some("user999"), None);
        assert_eq!(throttle.turn(&keys, later), Ok(Duration::ZERO));
        // IPv6 clients count by their /64.
        let a = throttle.keys(None, Some("2001:db8::1".parse().expect("ip")));
        let b = throttle.keys(None, Some("2001:db8::2:3".parse().expect("ip")));
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn tokens_are_capped_and_expire_when_idle() {
        let policy = TokenPolicy {
            max_tokens: 3,
            // Past six sign-ins' password hashing.
            idle_timeout: Duration::from_millis(1500),
            ..TokenPolicy::default()
        };
        let (_dir, auth) = authenticator(policy).await;
        let alice = basic("YWxpY2U6czNjcmV0");
        let bob = auth
            .handshake(&basic("Ym9iOmh1bnRlcjI"), None)
            .await
            .expect("bob");
        let mut tokens = Vec::new();
        for _ in 0..5 {
            tokens.push(auth.handshake(&alice, None).await.expect("alice"));
            assert!(auth.live_tokens() <= 3);
        }
        // Alice holds the most: her own oldest tokens made room.
        assert_eq!(
            auth.authorize(&bearer(&bob), None)
                .expect("bob keeps his")
                .user(),
            Some("bob")
        );
        let err = auth
            .authorize(&bearer(&tokens[0]), None)
            .expect_err("evicted");
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("evicted"), "{err}");
        let caller = auth.authorize(&bearer(&tokens[4]), None).expect("newest");
        auth.session(&caller)
            .await
            .expect("session built on first use");
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let err = auth.authorize(&bearer(&tokens[4]), None).expect_err("idle");
        assert_eq!(
            err.message(),
            "token expired (unused for longer than 1.5 s): authenticate again"
        );
        assert_eq!(auth.live_tokens(), 0, "expired grants are freed");
        let err = auth.authorize(&bearer("x"), None).expect_err("garbage");
        assert!(err.message().contains("invalid or expired token"), "{err}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
