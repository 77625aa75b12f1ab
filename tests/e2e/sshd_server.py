"""sshd_server.py — a real OpenSSH sshd for the batch-transport end-to-end tests (standard library
only; needs root, /usr/sbin/sshd, sftp and ssh-keygen from Debian 12's openssh packages).

SshdServer runs `/usr/sbin/sshd -D -e -f <generated config>` on 127.0.0.1 with a free port and
the production-like SFTP jail for the system user `sdsftp`:

    Match User sdsftp -> ChrootDirectory (root-owned, 0755), ForceCommand internal-sftp,
                         no forwarding, no TTY; files are dropped into /upload/ (owned by sdsftp)

Both password and public-key authentication work (.password, .client_key). The client side is the
OpenSSH `sftp` client in batch mode (put/listdir/get) and, for the hub's libcurl transport,
curl_args() gives curl flags that work against it.

Where the files live: sshd refuses a ChrootDirectory with any path component that is not
root-owned or is group/world-writable, and StrictModes refuses an AuthorizedKeysFile under such a
directory — the sticky bit does not help, so nothing can live under /tmp or /var/tmp (mode 1777).
Every server therefore gets a fresh directory under /run/stagedoor-e2e (root, 0755), or under
E2E_SSHD_BASE if set; it is removed by stop() (kept if E2E_KEEP is set, for post-mortems).

Layout of one server directory (BASE/sshd-XXXX, root 0755):
    sshd_config, sshd.log, sshd.pid, ssh_host_ed25519_key[.pub], known_hosts,
    client/id_ed25519[.pub]   (root 0700 / 0600: the ssh client insists)
    keys/authorized_keys      (root 0644, readable by sdsftp: sshd reads it as the user)
    chroot/                   (root 0755)  == .chroot
    chroot/upload/            (sdsftp 0755) == .upload_dir

Timeouts: every wait has one; TIME_SCALE (env E2E_TIME_SCALE, default 1) stretches them.
Every SshdServer still running at interpreter exit is killed.
"""

import atexit
import base64
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

TIME_SCALE = float(os.environ.get("E2E_TIME_SCALE", "1") or "1")
START_TIMEOUT = 20.0 * TIME_SCALE
STOP_TIMEOUT = 10.0 * TIME_SCALE
CLIENT_TIMEOUT = 30.0 * TIME_SCALE
VERBOSE = bool(os.environ.get("E2E_VERBOSE"))

SSHD = "/usr/sbin/sshd"
SFTP = "/usr/bin/sftp"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
USER = "sdsftp"
# Fixed on purpose: concurrent test processes share the one system user, so they must agree on
# its password. The user can only log in to the jail of a test sshd (shell /usr/sbin/nologin).
PASSWORD = "sd-e2e-sftp-pw"
DEFAULT_BASE = "/run/stagedoor-e2e"
PRIVSEP_DIR = "/run/sshd"

_live = set()
_live_lock = threading.Lock()
_user_lock = threading.Lock()


def _kill_all():
    with _live_lock:
        servers = list(_live)
    for s in servers:
        try:
            s.kill()
            s._cleanup_dir()
        except Exception:
            pass


atexit.register(_kill_all)


def _run(cmd, input=None, timeout=None, check=True):
    cp = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=timeout or CLIENT_TIMEOUT,
                        stdin=None if input is not None else subprocess.DEVNULL)
    if VERBOSE:
        sys.stderr.write("$ %s -> %d\n%s%s" % (" ".join(cmd), cp.returncode,
                                               cp.stdout.decode("utf-8", "replace"),
                                               cp.stderr.decode("utf-8", "replace")))
    if check and cp.returncode != 0:
        raise RuntimeError("%r failed with %d\nstdout: %s\nstderr: %s"
                           % (cmd, cp.returncode, cp.stdout.decode("utf-8", "replace"),
                              cp.stderr.decode("utf-8", "replace")))
    return cp


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _check_root_chain(path):
    """Raise RuntimeError unless path and each parent is root-owned and not group/world-writable
    (what sshd demands of ChrootDirectory and, with StrictModes, of AuthorizedKeysFile)."""
    p = os.path.realpath(path)
    while True:
        st = os.stat(p)
        if st.st_uid != 0 or (st.st_mode & 0o022):
            raise RuntimeError("sshd would refuse %s: %s is owner %d mode %o (needs root-owned, "
                               "not group/world-writable; set E2E_SSHD_BASE)"
                               % (path, p, st.st_uid, stat.S_IMODE(st.st_mode)))
        if p == "/":
            return
        p = os.path.dirname(p)


def ensure_user():
    """Create the system user sdsftp if missing and set its known password. Safe against other
    test processes doing the same at the same time. Returns its pwd entry."""
    with _user_lock:
        for attempt in range(20):
            try:
                pw = pwd.getpwnam(USER)
                break
            except KeyError:
                pass
            cp = _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                       USER], check=False)
            # 9: already exists (another process won the race); 10: /etc/passwd locked
            if cp.returncode not in (0, 9, 10):
                raise RuntimeError("useradd %s failed with %d: %s"
                                   % (USER, cp.returncode, cp.stderr.decode("utf-8", "replace")))
            if cp.returncode == 10:
                time.sleep(0.1)
        else:
            raise RuntimeError("could not create user %s" % USER)
        last = None
        for attempt in range(20):  # chpasswd fails while another process holds /etc/shadow's lock
            cp = _run(["chpasswd"], input=("%s:%s\n" % (USER, PASSWORD)).encode(), check=False)
            if cp.returncode == 0:
                return pw
            last = cp.stderr.decode("utf-8", "replace")
            time.sleep(0.1)
        raise RuntimeError("chpasswd for %s failed: %s" % (USER, last))


def _sftp_quote(s):
    """Quote one argument for an sftp batch line."""
    if "\n" in s or "\r" in s:
        raise ValueError("sftp batch arguments cannot contain newlines: %r" % (s,))
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_GLOB = set('*?[]{}\\"\'')


class SftpError(AssertionError):
    pass


class SshdServer:
    """A real sshd on 127.0.0.1 with the production-like SFTP jail for user sdsftp.

    with SshdServer() as s:
        s.put("/path/file.csv", "tickets.csv")       # -> s.upload_dir/tickets.csv
    """

    def __init__(self, base_dir=None, log_level="VERBOSE"):
        self.base_dir = base_dir or os.environ.get("E2E_SSHD_BASE") or DEFAULT_BASE
        self.log_level = log_level
        self.user = USER
        self.password = PASSWORD
        self.host = "127.0.0.1"
        self.port = None
        self.dir = None
        self.proc = None
        self.config_text = None
        self.config_path = None
        self.log_path = None
        self.host_key = None          # private host key path
        self.host_key_pub = None      # "ssh-ed25519 AAAA..." (no comment)
        self.host_key_sha256 = None   # base64 SHA256 of the host key blob, no '=' padding
        self.host_key_md5 = None      # 32 lowercase hex digits
        self.known_hosts = None
        self.client_key = None
        self.client_key_pub = None
        self.chroot = None
        self.upload_dir = None
        self._log_file = None

    # -- context manager
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- setup
    def _prepare(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("SshdServer needs root (sshd, useradd, ChrootDirectory)")
        for tool in (SSHD, SFTP, SSH_KEYGEN):
            if not os.access(tool, os.X_OK):
                raise unittest.SkipTest("%s is not installed (Debian: openssh-server, "
                                        "openssh-client)" % tool)
        pw = ensure_user()
        # sshd refuses to start without its privilege-separation directory
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        os.makedirs(self.base_dir, mode=0o755, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        _check_root_chain(self.base_dir)

        d = tempfile.mkdtemp(prefix="sshd-", dir=self.base_dir)
        os.chmod(d, 0o755)
        self.dir = d
        self.host_key = os.path.join(d, "ssh_host_ed25519_key")
        _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "stagedoor-e2e-host", "-f",
              self.host_key])
        with open(self.host_key + ".pub") as f:
            parts = f.read().split()
        self.host_key_pub = parts[0] + " " + parts[1]
        blob = base64.b64decode(parts[1])
        self.host_key_sha256 = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        self.host_key_md5 = hashlib.md5(blob).hexdigest()

        cdir = os.path.join(d, "client")
        os.mkdir(cdir, 0o700)
        self.client_key = os.path.join(cdir, "id_ed25519")
        self.client_key_pub = self.client_key + ".pub"
        _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "stagedoor-e2e-client", "-f",
              self.client_key])

        kdir = os.path.join(d, "keys")
        os.mkdir(kdir, 0o755)
        os.chmod(kdir, 0o755)
        self.authorized_keys = os.path.join(kdir, "authorized_keys")
        with open(self.client_key_pub) as f:
            pub = f.read()
        with open(self.authorized_keys, "w") as f:
            f.write(pub)
        os.chmod(self.authorized_keys, 0o644)

        self.chroot = os.path.join(d, "chroot")
        os.mkdir(self.chroot, 0o755)
        os.chmod(self.chroot, 0o755)
        self.upload_dir = os.path.join(self.chroot, "upload")
        os.mkdir(self.upload_dir, 0o755)
        os.chown(self.upload_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.upload_dir, 0o755)
        _check_root_chain(self.chroot)
        _check_root_chain(self.authorized_keys)

        self.known_hosts = os.path.join(d, "known_hosts")
        self.config_path = os.path.join(d, "sshd_config")
        self.log_path = os.path.join(d, "sshd.log")

    def _config(self, port):
        d = self.dir
        return "\n".join([
            "# generated by tests/e2e/sshd_server.py",
            "Port %d" % port,
            "ListenAddress 127.0.0.1",
            "HostKey %s" % self.host_key,
            "PidFile %s" % os.path.join(d, "sshd.pid"),
            "LogLevel %s" % self.log_level,
            "UsePAM no",
            "PermitRootLogin no",
            "AllowUsers %s" % USER,
            "StrictModes yes",
            "PubkeyAuthentication yes",
            "AuthorizedKeysFile %s" % self.authorized_keys,
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "KbdInteractiveAuthentication no",
            "MaxStartups 50:30:100",
            "ClientAliveInterval 30",
            "Subsystem sftp internal-sftp",
            "",
            "Match User %s" % USER,
            "    ChrootDirectory %s" % self.chroot,
            "    ForceCommand internal-sftp -u 022 -P symlink,hardlink",
            "    AllowTcpForwarding no",
            "    AllowStreamLocalForwarding no",
            "    AllowAgentForwarding no",
            "    X11Forwarding no",
            "    PermitTunnel no",
            "    PermitTTY no",
            "    PermitUserRC no",
            "",
        ])

    # -- lifecycle
    def start(self, timeout=None):
        if self.proc is not None:
            raise RuntimeError("SshdServer already started")
        self._prepare()
        errors = []
        try:
            for attempt in range(8):
                port = _free_port()
                self.config_text = self._config(port)
                with open(self.config_path, "w") as f:
                    f.write(self.config_text)
                os.chmod(self.config_path, 0o644)
                if attempt == 0:
                    _run([SSHD, "-t", "-f", self.config_path])
                ok, why = self._spawn(port, timeout or START_TIMEOUT)
                if ok:
                    break
                errors.append(why)
                if "Address already in use" not in why and "Cannot bind" not in why:
                    raise RuntimeError("sshd failed to start:\n%s" % why)
            else:
                raise RuntimeError("sshd could not bind a port after %d attempts:\n%s"
                                   % (len(errors), "\n---\n".join(errors)))
        except BaseException:
            self._cleanup_dir()
            raise
        self.port = port
        with open(self.known_hosts, "w") as f:
            f.write("[%s]:%d %s\n" % (self.host, port, self.host_key_pub))
        os.chmod(self.known_hosts, 0o644)
        return self

    def _spawn(self, port, timeout):
        """Start sshd; wait for "Server listening". Returns (ok, reason)."""
        self._log_file = open(self.log_path, "ab")
        start_ofs = self._log_file.tell()
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=self._log_file, cwd=self.dir)
        with _live_lock:
            _live.add(self)
        want = ("Server listening on 127.0.0.1 port %d." % port).encode()
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(start_ofs)
                text = f.read()
            if want in text:
                return True, ""
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._reap()
                return False, "sshd exited with %s:\n%s" % (rc, text.decode("utf-8", "replace"))
            if time.monotonic() >= deadline:
                self.kill()
                return False, ("sshd not listening after %.0fs:\n%s"
                               % (timeout, text.decode("utf-8", "replace")))
            time.sleep(0.02)

    def _reap(self):
        with _live_lock:
            _live.discard(self)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=None):
        """SIGTERM sshd, wait, remove its directory (unless E2E_KEEP). Returns sshd's exit code."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout or STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(10)
            self._reap()
        self._cleanup_dir()
        return rc

    def kill(self):
        """SIGKILL sshd and reap it; the directory stays until stop() (or interpreter exit)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        rc = self.proc.returncode
        self._reap()
        return rc

    def _cleanup_dir(self):
        if self.dir and not os.environ.get("E2E_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        """The whole sshd log so far (sshd -e, LogLevel VERBOSE)."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def diagnostics(self, lines=60):
        return "--- sshd log (tail) %s ---\n%s" % (
            self.log_path, "\n".join(self.log_text().splitlines()[-lines:]))

    # -- paths and URLs
    def upload_path(self, name):
        """Host path of /upload/NAME inside the jail."""
        return os.path.join(self.upload_dir, name)

    def url(self, path="/upload/"):
        """sftp:// URL of a path as seen in the jail (the chroot is /)."""
        if not path.startswith("/"):
            path = "/" + path
        return "sftp://%s:%d%s" % (self.host, self.port, path)

    def curl_args(self, auth="password", host_check="insecure"):
        """curl command-line flags to reach this server.

        auth:       "password" (-u user:password) or "key" (-u user: --key --pubkey).
        host_check: "insecure" (no host key check), "sha256" (--hostpubsha256) or "md5"
                    (--hostpubmd5). The curl *tool* can only check known_hosts from
                    $HOME/.ssh/known_hosts; see curl_env(). libcurl takes any file through
                    CURLOPT_SSH_KNOWNHOSTS (use .known_hosts)."""
        if auth == "password":
            a = ["-u", "%s:%s" % (self.user, self.password)]
        elif auth == "key":
            a = ["-u", "%s:" % self.user, "--key", self.client_key, "--pubkey",
                 self.client_key_pub]
        else:
            raise ValueError("auth must be password or key")
        if host_check == "insecure":
            a.append("--insecure")
        elif host_check == "sha256":
            a += ["--hostpubsha256", self.host_key_sha256]
        elif host_check == "md5":
            a += ["--hostpubmd5", self.host_key_md5]
        elif host_check == "known_hosts":
            pass  # needs curl_env(): HOME with .ssh/known_hosts
        else:
            raise ValueError("host_check must be insecure, sha256, md5 or known_hosts")
        return a

    def curl_env(self, home_dir):
        """An environment whose HOME (home_dir, created) has .ssh/known_hosts for this server,
        for running the curl tool with host_check="known_hosts"."""
        sshdir = os.path.join(home_dir, ".ssh")
        os.makedirs(sshdir, exist_ok=True)
        shutil.copyfile(self.known_hosts, os.path.join(sshdir, "known_hosts"))
        env = dict(os.environ)
        env["HOME"] = home_dir
        return env

    # -- the OpenSSH sftp client
    def sftp_cmd(self):
        """argv of the OpenSSH sftp client in batch mode (commands on stdin), key auth, strict
        host key checking against .known_hosts, no user/system ssh config."""
        return [SFTP, "-F", "/dev/null", "-b", "-", "-i", self.client_key,
                "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=%s" % self.known_hosts,
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=%d" % max(5, int(10 * TIME_SCALE)),
                "-P", str(self.port), "%s@%s" % (self.user, self.host)]

    def sftp(self, commands, check=True, timeout=None):
        """Run sftp batch commands (list of lines). Returns CompletedProcess (bytes); raises
        SftpError on failure if check. In batch mode sftp stops at the first failing command
        (a line starting with '-' may fail)."""
        script = ("\n".join(commands) + "\n").encode("utf-8")
        cp = _run(self.sftp_cmd(), input=script, timeout=timeout, check=False)
        if check and cp.returncode != 0:
            raise SftpError("sftp failed with %d\ncommands: %r\nstdout: %s\nstderr: %s\n%s"
                            % (cp.returncode, commands, cp.stdout.decode("utf-8", "replace"),
                               cp.stderr.decode("utf-8", "replace"), self.diagnostics(20)))
        return cp

    def put(self, local_path, remote_name, temp_then_rename=True, remote_dir="upload"):
        """Upload local_path to REMOTE_DIR/REMOTE_NAME (default /upload/NAME) with sftp; with
        temp_then_rename first as REMOTE_DIR/.NAME.part, then rename (how a careful sender
        uploads, so the hub never sees half a file). Verifies the size on the host."""
        if "/" in remote_name:
            raise ValueError("remote_name is a file name, not a path: %r" % (remote_name,))
        src = local_path
        tmpcopy = None
        if any(c in _GLOB for c in local_path):
            # sftp globs the local argument of put: upload from a plain-named copy instead
            fd, tmpcopy = tempfile.mkstemp(prefix="sd-sftp-put-")
            os.close(fd)
            shutil.copyfile(local_path, tmpcopy)
            src = tmpcopy
        final = "%s/%s" % (remote_dir, remote_name)
        try:
            if temp_then_rename:
                part = "%s/.%s.part" % (remote_dir, remote_name)
                cmds = ["put %s %s" % (_sftp_quote(src), _sftp_quote(part)),
                        "rename %s %s" % (_sftp_quote(part), _sftp_quote(final))]
            else:
                cmds = ["put %s %s" % (_sftp_quote(src), _sftp_quote(final))]
            self.sftp(cmds)
        finally:
            if tmpcopy:
                os.unlink(tmpcopy)
        host = os.path.join(self.chroot, remote_dir.strip("/"), remote_name)
        want = os.path.getsize(local_path)
        try:
            got = os.path.getsize(host)
        except OSError as e:
            raise SftpError("uploaded file missing on the host: %s (%s)" % (host, e))
        if got != want:
            raise SftpError("uploaded %s has %d bytes, want %d" % (host, got, want))
        return host

    def put_bytes(self, data, remote_name, temp_then_rename=True, remote_dir="upload"):
        """put() of bytes/str content."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        fd, p = tempfile.mkstemp(prefix="sd-sftp-data-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self.put(p, remote_name, temp_then_rename, remote_dir)
        finally:
            os.unlink(p)

    def listdir(self, remote_dir="upload", all=False):
        """Names in a remote directory (sftp `ls -1`), sorted; dot files only with all=True
        ('.' and '..' never)."""
        cp = self.sftp(["ls -1%s %s" % ("a" if all else "", _sftp_quote(remote_dir))])
        prefix = remote_dir.rstrip("/") + "/"
        names = []
        for line in cp.stdout.decode("utf-8", "replace").splitlines():
            if line.startswith("sftp> ") or not line.strip():
                continue
            name = line.rstrip("\n")
            if name.startswith(prefix):
                name = name[len(prefix):]
            name = name.rstrip("/")
            if name in (".", ".."):
                continue
            names.append(name)
        return sorted(names)

    def get(self, remote_path, local_path):
        """Download a remote file with sftp; returns local_path."""
        self.sftp(["get %s %s" % (_sftp_quote(remote_path), _sftp_quote(local_path))])
        return local_path


if __name__ == "__main__":
    # Manual use: run a server until Ctrl-C and print how to reach it.
    with SshdServer() as s:
        print("sshd on port %d, dir %s" % (s.port, s.dir))
        print("password: %s  key: %s" % (s.password, s.client_key))
        print("curl -sS %s %s" % (" ".join(s.curl_args()), s.url()))
        print(s.config_text)
        try:
            while s.running():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
