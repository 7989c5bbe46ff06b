"""A real one-node Slurm cluster for the tests: munged + slurmctld + slurmd started as root in a
temporary directory, with a generated slurm.conf, and stopped again by PID.

    with SlurmCluster(os.path.join(tmp, "slurm")) as cluster:
        env = cluster.env({"X": "1"})        # os.environ less SLURM_*, + SLURM_CONF, + extra
        subprocess.run(["sbatch", "--wait", ...], env=env)

Contract:
  * installed() is false when the daemons or the client commands are missing (the caller skips);
    start() needs root (SlurmUser=root, munged as root) and raises ClusterError on any failure,
    after writing the daemons' log tails to stdout.
  * Every daemon runs in the foreground (-D / --foreground) as a child of this process, in its own
    session, so the PIDs held here are the daemons themselves; stop() cancels the jobs, then sends
    SIGTERM to slurmd, slurmctld and munged by those PIDs (SIGKILL after 10 s) and never signals
    anything by name. __exit__ calls stop(), so a `with` block or try/finally always ends them.
  * Nothing outside the given directory is written (no /etc/slurm, no /run/munge), except that
    its ancestors inside the system temp dir get a+x (below). Client commands find the cluster
    only through SLURM_CONF (env()).

Settings and the pitfalls they avoid (learnt on Debian 12: Slurm 22.05, munge 0.5.15, Open MPI
4.1.4 with PMIx 4.2):
  * munged refuses a socket path whose directories are not all executable by others, and a key
    directory that others can read: run/ and the root are 0755, ancestors inside the system temp
    dir (mkdtemp makes them 0700) get a+x, munge/ is 0700.
    AuthInfo=socket=... points slurmctld, slurmd and the clients at this munged.
  * Ports: slurmctld and slurmd get two consecutive free TCP ports, so that two test clusters (or
    a system Slurm) on one machine do not collide.
  * The node line is what `slurmd -C` detects; advertising more CPUs would need
    SlurmdParameters=config_overrides, or slurmctld drains the node ("Low socket*core*thread").
  * MpiDefault=pmix: `srun --mpi=pmix` (and plain srun) start Open MPI ranks through PMIx.
  * EnforcePartLimits=ALL: a job that can never run (more CPUs or GPUs than the node has) is
    rejected at submission instead of pending forever, which would hang `sbatch --wait`.
  * MinJobAge=5: `sbatch --wait` polls every 2 s when MinJobAge/2 <= 2, otherwise after 2 s, 8 s,
    then every 32 s; the price is that a finished job's record is purged 5-65 s after it ends.
  * SchedulerParameters batch_sched_delay=0, sched_min_interval=0, bf_interval=1: a batch job
    starts in under a second instead of ~3 s.
  * TmpFS in the cluster's directory: the PMIx plugin makes its per-step directories
    (spmix_appdir_<uid>_<job>.<step>) there, and job ids start at 1 in every test cluster, so a
    shared /tmp would let two clusters on one machine collide.
  * ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: no cgroups, which containers lack.
  * ReturnToService=2, and a node found DOWN/DRAINED while waiting is resumed.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("mungekey", "munge", "unmunge", "sbatch", "srun", "squeue", "sinfo", "scontrol",
           "scancel")


class ClusterError(RuntimeError):
    pass


def installed():
    """(ok, missing): whether every daemon and client command is on PATH (or in /usr/sbin)."""
    missing = [c for c in DAEMONS + CLIENTS if _which(c) is None]
    return not missing, missing


def _which(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port_pair():
    """A port p such that p and p + 1 are both free on 127.0.0.1 (slurmctld, slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
    raise ClusterError("no two consecutive free TCP ports")


class SlurmCluster:
    def __init__(self, root, timeout=60, default_time="00:15:00"):
        self.root = os.path.abspath(root)
        self.timeout = timeout
        self.default_time = default_time
        self.conf = os.path.join(self.root, "etc", "slurm.conf")
        self.munge_socket = os.path.join(self.root, "run", "munge.socket.2")
        self.node = socket.gethostname().split(".")[0]
        self.procs = {}                         # name -> Popen
        self._logs = []                         # the daemons' stderr files, closed by stop()

    # -- public -----------------------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def env(self, extra=None):
        """The environment for client commands (and the jobs they submit, which inherit it):
        os.environ without any SLURM_* variable of an enclosing allocation, plus SLURM_CONF,
        plus the extra dict."""
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("SLURM_")]:
            del env[k]                          # never inherit another allocation's variables
        env["SLURM_CONF"] = self.conf
        env.update(extra or {})
        return env

    def start(self):
        if os.geteuid() != 0:
            raise ClusterError("a test Slurm cluster must be started as root (SlurmUser=root)")
        ok, missing = installed()
        if not ok:
            raise ClusterError("not installed: " + " ".join(missing))
        t0 = time.time()
        for sub in ("etc", "state", "spool", "log", "run", "munge", "tmp"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        os.chmod(os.path.join(self.root, "tmp"), 0o1777)
        os.chmod(self.root, 0o755)
        self._open_ancestors()
        os.chmod(os.path.join(self.root, "run"), 0o755)     # munged: socket dir executable by all
        os.chmod(os.path.join(self.root, "munge"), 0o700)   # key dir: root only
        self._start_munge()
        self._write_conf()
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", self.conf])
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", self.conf])
        self._wait_idle()
        print(f"slurm test cluster up in {time.time() - t0:.1f} s: node {self.node}, "
              f"SLURM_CONF={self.conf}", flush=True)

    def stop(self):
        """Cancel jobs, then end slurmd, slurmctld and munged by PID (in that order)."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            env = self.env()
            subprocess.run([_which("scancel"), "--user=root"], env=env, capture_output=True,
                           timeout=30)
            t_end = time.time() + 10
            while time.time() < t_end:
                q = subprocess.run([_which("squeue"), "-h", "-o", "%i"], env=env,
                                   capture_output=True, text=True, timeout=30)
                if q.returncode != 0 or not q.stdout.strip():
                    break
                time.sleep(0.25)
        for group in (("slurmd", "slurmctld"), ("munged",)):
            live = [self.procs[n] for n in group
                    if n in self.procs and self.procs[n].poll() is None]
            for p in live:
                p.send_signal(signal.SIGTERM)
            for p in live:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
            for n in group:
                self.procs.pop(n, None)
        for f in self._logs:
            f.close()
        self._logs = []

    def wait_job(self, job_id, timeout=120):
        """Poll (every 0.25 s) until job_id leaves the queue; return (state, exit_code) from
        scontrol while the record is still held (call it right after sbatch --parsable)."""
        env = self.env()
        t_end = time.time() + timeout
        while time.time() < t_end:
            q = subprocess.run([_which("squeue"), "-h", "-j", str(job_id), "-o", "%i"], env=env,
                               capture_output=True, text=True)
            if not q.stdout.strip():
                break
            time.sleep(0.25)
        else:
            raise ClusterError(f"job {job_id} still queued after {timeout} s")
        s = subprocess.run([_which("scontrol"), "-o", "show", "job", str(job_id)], env=env,
                           capture_output=True, text=True)
        fields = dict(kv.split("=", 1) for kv in s.stdout.split() if "=" in kv)
        return fields.get("JobState", "?"), fields.get("ExitCode", "?")

    def log_tail(self, n=20):
        """The last n lines of each daemon's log (for failure reports)."""
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmctld.stderr",
                     "slurmd.stderr", "munged.stderr"):
            path = os.path.join(self.root, "log", name)
            if os.path.isfile(path):
                with open(path, errors="replace") as fh:
                    lines = fh.read().splitlines()[-n:]
                out += [f"[{name}] {line}" for line in lines]
        return "\n".join(out)

    # -- internals --------------------------------------------------------------------------

    def _fail(self, what):
        print(self.log_tail(), flush=True)
        raise ClusterError(what)

    def _spawn(self, name, cmd):
        log = open(os.path.join(self.root, "log", name + ".stderr"), "ab")
        self._logs.append(log)
        # start_new_session: a Ctrl-C meant for the test does not reach the daemons first;
        # they are ended by stop() in order.
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(0.2)
        if self.procs[name].poll() is not None:
            self._fail(f"{name} exited at start (status {self.procs[name].returncode})")

    def _open_ancestors(self):
        """munged also refuses a socket path whose ancestors are not executable by all
        ("Socket is inaccessible"), and tempfile.mkdtemp makes its directory 0700. Directories
        inside the system temp dir get a+x (search only, not read); elsewhere that is an error."""
        tmp = os.path.realpath(tempfile.gettempdir())
        d = os.path.dirname(os.path.realpath(self.root))
        while True:
            mode = os.stat(d).st_mode
            if not mode & 0o001:
                if d.startswith(tmp + os.sep):
                    os.chmod(d, (mode & 0o7777) | 0o111)
                else:
                    raise ClusterError(f"{d} is not executable by all; munged needs that for its "
                                       f"socket {self.munge_socket}")
            parent = os.path.dirname(d)
            if parent == d:
                return
            d = parent

    def _munge_ok(self):
        m = subprocess.run([_which("munge"), "-n", "-S", self.munge_socket], capture_output=True)
        if m.returncode != 0:
            return False
        u = subprocess.run([_which("unmunge"), "-S", self.munge_socket], input=m.stdout,
                           capture_output=True)
        return u.returncode == 0

    def _start_munge(self):
        key = os.path.join(self.root, "munge", "munge.key")
        if not os.path.isfile(key):
            subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True,
                           capture_output=True)
        os.chmod(key, 0o600)
        self._spawn("munged", [_which("munged"), "--foreground", f"--key-file={key}",
                               f"--socket={self.munge_socket}",
                               f"--pid-file={os.path.join(self.root, 'run', 'munged.pid')}",
                               f"--log-file={os.path.join(self.root, 'log', 'munged.log')}",
                               f"--seed-file={os.path.join(self.root, 'munge', 'munged.seed')}"])
        t_end = time.time() + 10
        while time.time() < t_end:
            if self._munge_ok():
                return
            if self.procs["munged"].poll() is not None:
                break
            time.sleep(0.1)
        self._fail("munged did not come up")

    def _write_conf(self):
        det = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True)
        first = det.stdout.splitlines()[0]          # NodeName=vm CPUs=2 Boards=1 ... RealMemory=N
        node_line = f"NodeName={self.node} " + first.split(" ", 1)[1]
        port = _free_port_pair()
        r = self.root
        text = f"""# generated by tests/ref/slurm_cluster.py (one node, no cgroups or accounting)
ClusterName=paitest
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={port}
SlurmdPort={port + 1}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
TmpFS={r}/tmp
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
ReturnToService=2
DependencyParameters=kill_invalid_depend
EnforcePartLimits=ALL
MpiDefault=pmix
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=5
InactiveLimit=0
MinJobAge=5
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE DefaultTime={self.default_time} State=UP
"""
        with open(self.conf + ".new", "w") as fh:
            fh.write(text)
        os.replace(self.conf + ".new", self.conf)

    def _wait_idle(self):
        env = self.env()
        t_end = time.time() + self.timeout
        state = "?"
        while time.time() < t_end:
            for name in ("slurmctld", "slurmd"):
                if self.procs[name].poll() is not None:
                    self._fail(f"{name} exited (status {self.procs[name].returncode})")
            ping = subprocess.run([_which("scontrol"), "ping"], env=env, capture_output=True)
            if ping.returncode == 0:
                s = subprocess.run([_which("sinfo"), "-h", "-N", "-n", self.node, "-o", "%T"],
                                   env=env, capture_output=True, text=True)
                state = (s.stdout.split() or ["?"])[0]
                if state in ("idle", "mixed", "allocated", "completing"):
                    return
                if any(w in state for w in ("drain", "down", "fail", "inval")):
                    subprocess.run([_which("scontrol"), "update", f"NodeName={self.node}",
                                    "State=RESUME"], env=env, capture_output=True)
            time.sleep(0.25)
        self._fail(f"node {self.node} not idle after {self.timeout} s (state {state!r})")
