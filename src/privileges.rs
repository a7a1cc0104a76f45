//! Giving up privileges once the capture handles are open: nothing after that needs
//! CAP_NET_RAW, so a bug in a decoder fed by hostile traffic runs with as little as possible.
//! Call while the process has a single thread: capabilities belong to threads.
use caps::CapSet;
use nix::unistd::{Gid, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("user '{0}' does not exist")]
    NoSuchUser(String),
    #[error("cannot look up user '{user}': {reason}")]
    Lookup { user: String, reason: String },
    #[error(
        "--user {user} needs root (running as uid {uid}); start as root, or drop --user and run as {user} with capabilities"
    )]
    NotRoot { user: String, uid: u32 },
    #[error("cannot drop privileges ({step}): {reason}")]
    Drop { step: &'static str, reason: String },
}

/// What `drop_privileges` did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Capabilities held before (names), all gone now.
    pub capabilities: Vec<String>,
    /// Root without a user to switch to: still uid 0.
    pub still_root: bool,
    /// Started as root and switched user.
    pub was_root: bool,
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.still_root {
            return write!(
                f,
                "running as root (no --user or [live] user); capabilities kept"
            );
        }
        write!(
            f,
            "running as {} (uid {}, gid {})",
            self.user, self.uid, self.gid
        )?;
        if self.was_root {
            write!(f, "; capabilities dropped (all: was root)")
        } else if self.capabilities.is_empty() {
            write!(f, "; no capabilities held")
        } else {
            write!(
                f,
                "; capabilities dropped: {}",
                self.capabilities.join(", ")
            )
        }
    }
}

fn step(step: &'static str) -> impl Fn(String) -> PrivilegeError {
    move |reason| PrivilegeError::Drop { step, reason }
}

fn held() -> Vec<String> {
    let mut names: Vec<String> = [CapSet::Permitted, CapSet::Effective, CapSet::Ambient]
        .into_iter()
        .filter_map(|set| caps::read(None, set).ok())
        .flatten()
        .map(|c| c.to_string().to_lowercase())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Clears every capability set this process may change without privilege.
fn clear_capabilities() -> Result<(), PrivilegeError> {
    caps::clear(None, CapSet::Ambient).map_err(|e| step("ambient capabilities")(e.to_string()))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| step("inheritable capabilities")(e.to_string()))?;
    // Clearing the permitted set clears the effective one with it.
    caps::clear(None, CapSet::Permitted)
        .map_err(|e| step("permitted capabilities")(e.to_string()))?;
    // A later execve of a setuid or file-capability binary cannot give them back.
    nix::sys::prctl::set_no_new_privs().map_err(|e| step("no_new_privs")(e.to_string()))?;
    let left = held();
    if !left.is_empty() {
        return Err(step("verify")(format!("still held: {}", left.join(", "))));
    }
    Ok(())
}

/// Root with `user`: switch to that user, its groups, and no capabilities (the bounding set
/// emptied too). Not root: drop whatever capabilities the process holds (file capabilities,
/// or systemd's AmbientCapabilities); `user`, if given, must be the user already running.
/// Root without a user stays root, and says so.
pub fn drop_privileges(user: Option<&str>) -> Result<Dropped, PrivilegeError> {
    let capabilities = held();
    let uid = Uid::current();
    let effective = Uid::effective();
    if !uid.is_root() && !effective.is_root() {
        if let Some(name) = user {
            let wanted = lookup(name)?;
            if wanted.uid != uid {
                return Err(PrivilegeError::NotRoot {
                    user: name.to_string(),
                    uid: uid.as_raw(),
                });
            }
        }
        clear_capabilities()?;
        let me = User::from_uid(uid).ok().flatten();
        return Ok(Dropped {
            user: me.map(|u| u.name).unwrap_or_else(|| uid.to_string()),
            uid: uid.as_raw(),
            gid: Gid::current().as_raw(),
            capabilities,
            still_root: false,
            was_root: false,
        });
    }
    let Some(name) = user else {
        return Ok(Dropped {
            user: "root".into(),
            uid: 0,
            gid: Gid::current().as_raw(),
            capabilities,
            still_root: true,
            was_root: true,
        });
    };
    let target = lookup(name)?;
    if target.uid.is_root() {
        return Err(step("user")(format!(
            "{name} is root; name an unprivileged user"
        )));
    }
    // Needs CAP_SETPCAP, so before the user switch.
    caps::clear(None, CapSet::Bounding).map_err(|e| step("bounding set")(e.to_string()))?;
    let cname = std::ffi::CString::new(target.name.clone())
        .map_err(|e| step("user name")(e.to_string()))?;
    nix::unistd::initgroups(&cname, target.gid).map_err(|e| step("setgroups")(e.to_string()))?;
    nix::unistd::setresgid(target.gid, target.gid, target.gid)
        .map_err(|e| step("setgid")(e.to_string()))?;
    // Real, effective and saved uid all change, so root cannot be regained; the kernel clears
    // the permitted and effective capabilities with it.
    nix::unistd::setresuid(target.uid, target.uid, target.uid)
        .map_err(|e| step("setuid")(e.to_string()))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(step("verify")("uid 0 could be regained".into()));
    }
    clear_capabilities()?;
    Ok(Dropped {
        user: target.name,
        uid: target.uid.as_raw(),
        gid: target.gid.as_raw(),
        capabilities,
        still_root: false,
        was_root: true,
    })
}

fn lookup(name: &str) -> Result<User, PrivilegeError> {
    match User::from_name(name) {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(PrivilegeError::NoSuchUser(name.to_string())),
        Err(e) => Err(PrivilegeError::Lookup {
            user: name.to_string(),
            reason: e.to_string(),
        }),
    }
}
