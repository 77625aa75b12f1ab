"""The Debian package (scripts/package) of the binary under test, installed and run.

- The .deb: control fields (version = the binary's, Depends naming the libraries it links),
  /etc/default/stagedoor as a conffile, the files (binary, unit, one gzipped man page per
  command, copyright, README), all owned by root.
- The unit: `systemd-analyze verify` finds nothing to say (when systemd-analyze is installed),
  the sandbox settings are there, and its offline security exposure stays low.
- Installed into a throwaway root with a temporary dpkg database (dpkg --instdir --admindir
  --force-script-chrootless: the maintainer scripts run with DPKG_ROOT and touch that root
  only): the stagedoor system user in the root's /etc/passwd, /var/lib/stagedoor owned by it
  (0700), the unit enabled. The host's user database, /var/lib/stagedoor, /etc/default and
  systemd directories are unchanged.
- The unit's ExecStart, expanded as systemd does with its Environment= and the installed
  /etc/default/stagedoor (edited as an operator would: port 0), started as the service user with
  paths inside the root: /healthz answers ok, a record written through the API reads back, an
  online backup taken meanwhile verifies, SIGTERM stops it with exit 0. The installed binary's
  --version and man pages render.
- Remove disables the unit and keeps the conffile and the data; purge removes the conffile and
  keeps the data.
"""

import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
import harness  # noqa: E402

UNIT = "lib/systemd/system/stagedoor.service"
DEFAULTS = "etc/default/stagedoor"
STATE = "/var/lib/stagedoor"
HOST_PATHS = ["/etc/passwd", "/etc/group", "/etc/shadow", "/var/lib/stagedoor",
              "/etc/default/stagedoor", "/lib/systemd/system/stagedoor.service",
              "/etc/systemd/system/multi-user.target.wants/stagedoor.service",
              "/usr/bin/stagedoor"]


def run(cmd, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL, **kw)


def host_state():
    """What the host has at the paths a real install would touch (content hash or absence)."""
    state = {}
    for p in HOST_PATHS:
        if os.path.isfile(p):
            try:
                with open(p, "rb") as f:
                    state[p] = hashlib.sha256(f.read()).hexdigest()
            except PermissionError:
                state[p] = "unreadable %d" % os.stat(p).st_mtime_ns
        else:
            state[p] = "dir" if os.path.isdir(p) else "absent"
    return state


def unit_settings(path):
    """[(key, value)] of a unit file, in order (no continuation lines in ours)."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")):
                continue
            k, _, v = line.partition("=")
            out.append((k, v))
    return out


def env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            k, _, v = line.partition("=")
            env[k.strip()] = v.strip().strip('"')
    return env


def expand_exec(line, env):
    """systemd's expansion of ExecStart: a word "$VAR" becomes VAR's words, "${VAR}" inside a
    word its value."""
    assert '"' not in line and "'" not in line, "the parser here handles unquoted words only"
    words = []
    for w in line.split():
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words.extend(env.get(m.group(1), "").split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                            lambda mm: env.get(mm.group(1), ""), w))
    return words


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sd-package-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        os.chmod(cls.tmp, 0o755)  # the service user reaches the installed root inside it
        cls.bin = harness.bin_path()
        cp = run([os.path.join(REPO, "scripts", "package"), "--bin", cls.bin,
                  "--out", os.path.join(cls.tmp, "out")])
        assert cp.returncode == 0, "scripts/package failed\n%s\n%s" % (cp.stdout, cp.stderr)
        cls.deb = cp.stdout.strip().splitlines()[-1]
        cls.version = run([cls.bin, "--version"]).stdout.split()[1]
        cls.commands = run([cls.bin, "man", "--list"]).stdout.split()

    def test_control_and_conffiles(self):
        self.assertTrue(os.path.basename(self.deb).startswith("stagedoor_%s_" % self.version))
        cp = run(["dpkg-deb", "-f", self.deb])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", cp.stdout, re.M))
        self.assertEqual(fields["Package"], "stagedoor")
        self.assertEqual(fields["Version"], self.version)
        self.assertTrue(fields["Maintainer"])
        depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
        for lib in ("adduser", "libc6", "libmicrohttpd12", "libjansson4", "libsqlite3-0",
                    "libxml2", "libcsv3", "libpq5", "libssl3"):
            self.assertIn(lib, depends)
        self.assertTrue(any(d.startswith("libcurl") for d in depends), depends)
        info = run(["dpkg-deb", "-I", self.deb, "conffiles"])
        self.assertEqual(info.stdout.split(), ["/etc/default/stagedoor"])
        for script in ("postinst", "prerm", "postrm"):
            self.assertEqual(run(["dpkg-deb", "-I", self.deb, script]).returncode, 0, script)

    def test_files(self):
        cp = run(["dpkg-deb", "-c", self.deb])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        entries = {}
        for line in cp.stdout.splitlines():
            parts = line.split()
            entries[parts[5].lstrip(".")] = (parts[0], parts[1])
        want = ["/usr/bin/stagedoor", "/" + UNIT, "/" + DEFAULTS,
                "/usr/share/doc/stagedoor/copyright", "/usr/share/doc/stagedoor/README.md.gz",
                "/usr/share/man/man1/stagedoor.1.gz"]
        want += ["/usr/share/man/man1/stagedoor-%s.1.gz" % c for c in self.commands]
        for path in want:
            self.assertIn(path, entries)
        self.assertEqual(entries["/usr/bin/stagedoor"][0], "-rwxr-xr-x")
        self.assertTrue(all(owner == "root/root" for _, owner in entries.values()))

    def test_unit(self):
        settings = unit_settings(os.path.join(REPO, "packaging", "stagedoor.service"))
        keys = dict(settings)
        for k, v in (("User", "stagedoor"), ("ProtectSystem", "strict"),
                     ("NoNewPrivileges", "yes"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                     ("PrivateDevices", "yes"), ("Restart", "on-failure"),
                     ("KillSignal", "SIGTERM"), ("StandardError", "journal"),
                     ("StateDirectory", "stagedoor"),
                     ("EnvironmentFile", "-/etc/default/stagedoor")):
            self.assertEqual(keys.get(k), v, k)
        self.assertEqual(set(keys["RestrictAddressFamilies"].split()),
                         {"AF_INET", "AF_INET6", "AF_UNIX"})
        self.assertIn(STATE, keys["ReadWritePaths"].split())
        self.assertIn("--data %s" % STATE, keys["ExecStart"])
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        # verify checks that ExecStart's binary exists: point it at the binary under test.
        d = tempfile.mkdtemp(dir=self.tmp)
        with open(os.path.join(REPO, "packaging", "stagedoor.service")) as f:
            text = f.read().replace("ExecStart=/usr/bin/stagedoor", "ExecStart=" + self.bin)
        unit = os.path.join(d, "stagedoor.service")
        with open(unit, "w") as f:
            f.write(text)
        cp = run(["systemd-analyze", "verify", "--man=no", unit])
        self.assertEqual((cp.returncode, cp.stderr.strip()), (0, ""), cp.stderr)
        cp = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit])
        m = re.search(r"Overall exposure level for stagedoor.service: (\d+\.\d)", cp.stdout)
        self.assertTrue(m, cp.stdout[-500:] + cp.stderr)
        self.assertLessEqual(float(m.group(1)), 2.5, cp.stdout)

    def test_install_run_remove(self):
        if os.geteuid() != 0:
            self.skipTest("installing into a root directory needs root (chown to the service "
                          "user)")
        before = host_state()
        root = os.path.join(self.tmp, "root")
        admin = os.path.join(root, "var", "lib", "dpkg")
        for d in ("etc", "var/log", "var/lib/dpkg/info", "var/lib/dpkg/updates"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        # a minimal user database, as a base system has
        for name, text in (("passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                           ("group", "root:x:0:\n"), ("shadow", "root:*:19000:0:99999:7:::\n"),
                           ("gshadow", "root:*::\n")):
            with open(os.path.join(root, "etc", name), "w") as f:
                f.write(text)
        open(os.path.join(admin, "status"), "w").close()
        dpkg = ["dpkg", "--instdir=" + root, "--admindir=" + admin, "--force-script-chrootless",
                "--force-depends", "--log=" + os.path.join(root, "var/log/dpkg.log")]
        cp = run(dpkg + ["-i", self.deb])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertIn("Status: install ok installed", run(dpkg + ["-s", "stagedoor"]).stdout)

        with open(os.path.join(root, "etc/passwd")) as f:
            users = {l.split(":")[0]: l.split(":") for l in f}
        self.assertIn("stagedoor", users)
        uid, gid = int(users["stagedoor"][2]), int(users["stagedoor"][3])
        self.assertLess(uid, 1000, "a system user")
        self.assertEqual(users["stagedoor"][5], STATE)
        st = os.stat(root + STATE)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (uid, gid, 0o700))
        wants = os.path.join(root, "etc/systemd/system/multi-user.target.wants/stagedoor.service")
        self.assertEqual(os.readlink(wants), "/" + UNIT)
        self.assertEqual(host_state(), before, "installing into a root touched the host")

        installed = os.path.join(root, "usr/bin/stagedoor")
        self.assertEqual(run([installed, "--version"]).stdout, run([self.bin, "--version"]).stdout)
        if shutil.which("man"):
            cp = run(["man", "-l", "-Tutf8", os.path.join(root, "usr/share/man/man1/stagedoor.1.gz")])
            self.assertEqual(cp.returncode, 0, cp.stderr)
            text = re.sub(r".\x08", "", cp.stdout)
            self.assertIn("ENVIRONMENT", text)
            self.assertIn("STAGEDOOR_STORE", text)
        with gzip.open(os.path.join(root, "usr/share/man/man1/stagedoor-backup.1.gz"), "rt") as f:
            self.assertIn(".SH SYNOPSIS", f.read())

        self.serve_from_unit(root, uid, gid)

        cp = run(dpkg + ["-r", "stagedoor"])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertFalse(os.path.exists(installed))
        self.assertFalse(os.path.exists(os.path.join(root, UNIT)))
        self.assertFalse(os.path.lexists(wants), "remove disables the unit")
        self.assertTrue(os.path.exists(os.path.join(root, DEFAULTS)), "conffile kept on remove")
        cp = run(dpkg + ["-P", "stagedoor"])
        self.assertEqual(cp.returncode, 0, cp.stdout + cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(root, DEFAULTS)), "purge removes it")
        self.assertTrue(os.path.exists(os.path.join(root + STATE, "stagedoor.db")),
                        "purge keeps the data")
        self.assertEqual(host_state(), before, "the package's life touched the host")

    def serve_from_unit(self, root, uid, gid):
        settings = unit_settings(os.path.join(root, UNIT))
        # The operator's edit of the conffile: any free port.
        defaults = os.path.join(root, DEFAULTS)
        with open(defaults) as f:
            text = f.read()
        self.assertIn("\nSTAGEDOOR_LISTEN=", text)
        with open(defaults, "w") as f:
            f.write(re.sub(r"\nSTAGEDOOR_LISTEN=.*", "\nSTAGEDOOR_LISTEN=127.0.0.1:0", text))
        # Environment= first, then EnvironmentFile= overrides (systemd's order).
        env = {}
        for k, v in settings:
            if k == "Environment":
                name, _, value = v.partition("=")
                env[name] = value
        for k, v in settings:
            if k == "EnvironmentFile":
                env.update(env_file(root + v.lstrip("-")))
        argv = expand_exec(dict(settings)["ExecStart"], env)
        self.assertEqual(argv[:2], ["/usr/bin/stagedoor", "serve"])
        self.assertIn("127.0.0.1:0", argv)
        inside = lambda p: root + p if p.startswith(("/usr/bin/", STATE)) else p  # noqa: E731
        argv = [inside(a) for a in argv]
        workdir = inside(dict(settings)["WorkingDirectory"])
        proc_env = {"PATH": "/usr/bin:/bin"}
        proc_env.update({k: v for k, v in env.items() if k.startswith("STAGEDOOR_") and v})
        as_service = dict(user=uid, group=gid, extra_groups=[], umask=0o077)
        proc = subprocess.Popen(argv, cwd=workdir, env=proc_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, **as_service)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        lines = []
        port_found = threading.Event()
        port = []

        def drain_stdout():
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                lines.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m and not port:
                    port.append(int(m.group(1)))
                    port_found.set()

        err = []
        threads = [threading.Thread(target=drain_stdout, daemon=True),
                   threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)]
        for t in threads:
            t.start()
        self.assertTrue(port_found.wait(30 * harness.TIME_SCALE),
                        "the unit's command line did not listen:\n%s\n%s" % (lines, err[-20:]))
        r = harness.http(port[0], "GET", "/healthz")
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}))

        def cli(*args):
            cp = run([root + "/usr/bin/stagedoor"] + list(args) + ["--data", root + STATE],
                     env=proc_env, **as_service)
            self.assertEqual(cp.returncode, 0, "%r: %s" % (args, cp.stderr))
            return cp.stdout

        cli("tenant", "create", "venue")
        key = cli("key", "create", "venue", "--env", "test").strip().splitlines()[-1]
        api = harness.Api(port[0], "venue", key)
        # The hub notices keys the CLI adds within a second.
        harness.wait_until(lambda: api.get("customers", query="limit=1").status == 200,
                           5 * harness.TIME_SCALE, what="the new key to be known")
        r = api.ingest({"customers": [harness.customer("C-PKG-1", first_name="Ada")]})
        self.assertEqual(r.status, 202, r)
        r = api.get("customers", "C-PKG-1")
        self.assertEqual((r.status, r.json.get("first_name")), (200, "Ada"), r)
        # An online backup by the service user while the unit's hub serves.
        parent = os.path.join(self.tmp, "backups")
        os.mkdir(parent)
        os.chown(parent, uid, gid)
        out = cli("backup", os.path.join(parent, "b1"))
        self.assertRegex(out, r"control\.db\s+tenants\s+1 rows")
        self.assertRegex(out, r"stagedoor\.db\s+customers\s+1 rows")
        # Every file of the state directory is the service user's.
        for name in os.listdir(root + STATE):
            self.assertEqual(os.stat(os.path.join(root + STATE, name)).st_uid, uid, name)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(150), 0, "graceful stop on SIGTERM\n%s" % err[-20:])
        for t in threads:
            t.join(10)
        proc.stdout.close()
        proc.stderr.close()


if __name__ == "__main__":
    harness.main()
