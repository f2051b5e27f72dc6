package jail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// startReadyTimeout bounds how long an init may take over its setup.
const startReadyTimeout = 30 * time.Second

// starting is one environment start in progress: what its steps made so
// far, and how to undo it if a later step fails.
type starting struct {
	ctx     context.Context
	e       *environment
	network string   // the spec's network mode, "" made NetworkNone
	nat     *natNet  // NetworkNAT: eth0 as the network step made it
	rootfs  *os.File // the rootfs, O_PATH: fd 4 in the init
	child   *os.File // the init's end of the control socket: fd 3 in the init
	listen  *os.File // the socket later gateways reach it on: fd 6 in the init (nil: not adoptable)
	veth    string   // NetworkNAT: the host end's name, for the record
	undo    []func() // each step's cleanup, run last first if a later step fails
}

// startStep is one step of the gateway's side of a start.
type startStep struct {
	name string // the failing StepError's Step
	run  func(*starting) error
}

// start re-executes the gateway binary as the environment's init in fresh
// namespaces (design.md: "How an environment starts") and waits until it is
// ready or says which step failed. These are the gateway's steps; the
// init's are setup()'s. A failure is a *StepError naming its step: one of
// these, or the init's.
func (e *environment) start(ctx context.Context) error {
	var rnd [4]byte
	rand.Read(rnd[:])
	e.name = envName(time.Now(), hex.EncodeToString(rnd[:]))
	steps := []startStep{
		{"spec", checkSpec},       // refuse what cannot start: no id range, an unknown network mode
		{"rootfs", openRootfs},    // pin the tenant's tree by fd: a later rename cannot swap it
		{"control", openControl},  // the socketpair the init is driven over
		{"cgroup", createCgroup},  // her limits exist before any of her code runs
		{"clone", cloneInit},      // the init, in fresh namespaces and already in the cgroup
		{"oom", resetOOMScore},    // her processes are the OOM killer's to take, not the gateway's -1000
		{"network", setupNetwork}, // the mode's setup from outside the new netns (none: nothing)
		{"config", sendConfig},    // what the init needs to build the jail from inside
		{"ready", awaitReady},     // the init's setup() ran, or it names the step that failed
		{"record", writeRecord},   // what a later gateway adopts it by (records_linux.go)
	}
	s := &starting{ctx: ctx, e: e}
	defer s.closeFiles()
	for _, step := range steps {
		if err := step.run(s); err != nil {
			for i := len(s.undo) - 1; i >= 0; i-- {
				s.undo[i]()
			}
			return asStepError(step.name, err)
		}
	}
	return nil
}

// asStepError names step as where err happened, unless err already names
// its step (the init's setup does).
func asStepError(step string, err error) *StepError {
	var se *StepError
	if errors.As(err, &se) {
		return se
	}
	return &StepError{Step: step, Err: err.Error(), Cause: err}
}

// closeFiles closes the gateway's copies of what the init inherits.
func (s *starting) closeFiles() {
	for _, f := range []*os.File{s.rootfs, s.child, s.listen} {
		if f != nil {
			f.Close()
		}
	}
}

// checkSpec refuses a spec no environment can start from, before anything
// is made for it.
func checkSpec(s *starting) error {
	spec := &s.e.spec
	if spec.IDMap.Size == 0 {
		return errors.New("no host id range for the tenant")
	}
	mode, err := networkMode(spec.Network)
	if err != nil {
		return err
	}
	s.network = mode
	if spec.Seccomp == SeccompUnconfined {
		s.e.sup.log.Warn("seccomp disabled for this environment (seccomp: unconfined)", "tenant", spec.Tenant)
	}
	return nil
}

// openRootfs checks the tenant's ids can reach her rootfs and opens it. The
// init binds the rootfs by path, then checks it is this very directory (the
// fd): a rename after this point cannot swap it. Its last component must
// not be a symlink.
func openRootfs(s *starting) error {
	root := s.e.spec.Rootfs
	if err := searchable(root); err != nil {
		return err
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open rootfs", Path: root, Err: err}
	}
	s.rootfs = os.NewFile(uintptr(fd), root)
	return nil
}

// openControl makes the control socket (control_linux.go): SOCK_SEQPACKET,
// so each message is one datagram with its fds on it.
func openControl(s *starting) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "control")
	s.child = os.NewFile(uintptr(fds[1]), "control")
	unix.SetNonblock(fds[0], true)
	ctl, err := newCtlConn(parent)
	if err != nil {
		return err
	}
	s.e.ctl = ctl
	s.undo = append(s.undo, func() { ctl.close() })
	return listenControl(s)
}

// createCgroup makes the environment's cgroup with the tenant's limits,
// less those this host cannot enforce under limits_enforcement: best-effort.
func createCgroup(s *starting) error {
	e := s.e
	limits := e.spec.Limits
	if e.sup.opts.BestEffort {
		limits = e.sup.enforceable(e.spec.Tenant, limits)
	}
	cg, err := e.sup.cg.Create(e.spec.Tenant, e.name, limits)
	if err != nil {
		return err
	}
	e.cg = cg
	s.undo = append(s.undo, func() { cg.Destroy() })
	return nil
}

// cloneInit starts the init in fresh namespaces created by her own host
// uid (init_stage_linux.go: the kernel charges her inotify, mqueue and
// namespace counts to their creator), placed in the cgroup before it runs
// (style b.4), and writes its id maps before it execs as her root.
func cloneInit(s *starting) error {
	e := s.e
	var p stagePipes
	defer p.close()
	if err := p.open(e); err != nil {
		return err
	}
	starter := starterCmd(e, s.child, s.rootfs, s.listen, &p)
	if err := e.cg.Start(starter); err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	// The starter waits on its stdin (holdW) until it is in her cgroup:
	// the init it clones, and its cgroup namespace, must be born there.
	p.holdR.Close()
	p.holdR = nil
	if err := e.cg.Adopt(starter.Process.Pid); err != nil {
		starter.Process.Kill()
		starter.Wait()
		return fmt.Errorf("join cgroup: %w", err)
	}
	p.holdW.Close()
	p.holdW = nil
	// Only the init may hold its end: ours would hide its exit (EOF).
	s.child.Close()
	s.child = nil
	p.closeChildEnds()
	pid, err := p.readPid(starter)
	if err != nil {
		return err
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("init %d: %w", pid, err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0) // before the maps: it is stopped until then, never gone
	if err != nil {
		proc.Kill()
		return fmt.Errorf("init %d: pidfd: %w", pid, err)
	}
	e.cmd = &initProc{Process: proc, child: true, pidfd: pidfd}
	s.undo = append(s.undo, func() {
		e.cmd.Process.Kill()
		e.cmd.Wait()
	})
	return writeIDMaps(pid, e.spec.IDMap)
}

// stagePipes are the pipes between the gateway and the init's stages.
type stagePipes struct {
	holdR, holdW *os.File // the starter's stdin: closed once it is in her cgroup
	pidR, pidW   *os.File // the starter's stdout: the init's pid
	mapsR, mapsW *os.File // initMapsFd: closed by the gateway once the maps are written
	errW         *os.File // stderr of the starter and the init, copied into the log
}

func (p *stagePipes) open(e *environment) error {
	var err error
	if p.holdR, p.holdW, err = os.Pipe(); err != nil {
		return err
	}
	if p.pidR, p.pidW, err = os.Pipe(); err != nil {
		return err
	}
	if p.mapsR, p.mapsW, err = os.Pipe(); err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	p.errW = errW
	go func() {
		io.Copy(&logWriter{log: e.sup.log, tenant: e.spec.Tenant, env: e.name}, errR)
		errR.Close()
	}()
	return nil
}

// closeChildEnds closes the gateway's copies of what the stages hold.
func (p *stagePipes) closeChildEnds() {
	for _, f := range []**os.File{&p.pidW, &p.mapsR, &p.errW} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// close closes every pipe end still open: mapsW last of all, which tells
// the init the maps are written (or, on a failure, that none will come).
func (p *stagePipes) close() {
	p.closeChildEnds()
	for _, f := range []*os.File{p.holdR, p.holdW, p.pidR, p.mapsW} {
		if f != nil {
			f.Close()
		}
	}
}

// readPid reads the init's pid from the starter, which then exits.
func (p *stagePipes) readPid(starter *exec.Cmd) (int, error) {
	out, rerr := io.ReadAll(io.LimitReader(p.pidR, 32))
	werr := starter.Wait()
	if werr != nil {
		return 0, fmt.Errorf("init starter: %w", werr)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if rerr != nil || err != nil || pid <= 0 {
		return 0, fmt.Errorf("init starter said %q instead of a pid", out)
	}
	return pid, nil
}

// writeIDMaps maps her namespace's ids 0… to her host range. The gateway
// is root on the host, which user_namespaces(7) requires to map more than
// the writer's own id; setgroups stays allowed, since only root wrote the
// maps (a group the host relies on cannot be dropped by her).
func writeIDMaps(pid int, m IDMap) error {
	for _, f := range []struct {
		name string
		host uint32
	}{{"uid_map", m.UID}, {"gid_map", m.GID}} {
		p := fmt.Sprintf("/proc/%d/%s", pid, f.name)
		if err := os.WriteFile(p, fmt.Appendf(nil, "0 %d %d\n", f.host, m.Size), 0); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// resetOOMScore sets the init's oom_score_adj to 0 before it starts
// anything: a child inherits its parent's score, and the gateway runs at
// -1000 (as sshd's listener does) so that the OOM killer never takes the
// door. A tenant at -1000 would be the one thing neither the host's nor her
// cgroup's OOM killer may kill (proc(5): oom_score_adj).
func resetOOMScore(s *starting) error {
	p := fmt.Sprintf("/proc/%d/oom_score_adj", s.e.cmd.Process.Pid)
	if err := os.WriteFile(p, []byte("0"), 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// starterCmd is the init's first stage (init_stage_linux.go): the gateway
// binary (or the sealed init) on the host as her base uid and gid, with no
// supplementary groups, with the control socket, the rootfs and the maps
// pipe as fds 3, 4 and 5. It keeps CAP_SYS_ADMIN, and nothing else, for its
// one clone: hosts that refuse user namespaces to unprivileged users
// (Ubuntu's kernel.apparmor_restrict_unprivileged_userns, Debian's
// kernel.unprivileged_userns_clone=0) allow them to a holder of it, and in
// the new namespace it means nothing on the host. The creator's euid, not
// its capabilities, is what the kernel charges her counts to.
func starterCmd(e *environment, child, rootfs, listen *os.File, p *stagePipes) *exec.Cmd {
	spec := &e.spec
	return &exec.Cmd{
		Path: e.sup.opts.InitPath,
		Args: []string{"jailgate", "init"},
		// One P: the init mostly waits, and each P costs it heap caches
		// and a GC worker (≈ 250 KiB of its resident memory).
		Env:        starterEnv(listen != nil),
		ExtraFiles: extraFiles(child, rootfs, p.mapsR, listen), // fds 3, 4, 5 and 6
		Stdin:      p.holdR,
		Stdout:     p.pidW,
		Stderr:     p.errW,
		SysProcAttr: &unix.SysProcAttr{
			Credential:  &syscall.Credential{Uid: spec.IDMap.UID, Gid: spec.IDMap.GID, Groups: []uint32{}},
			AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN},
		},
	}
}

// starterEnv is the starter's environment; adoptable says fd 6 is the
// listening control socket.
func starterEnv(adoptable bool) []string {
	env := []string{"_JAILGATE_INIT=" + stageStart, "GOMAXPROCS=1"}
	if adoptable {
		env = append(env, listenEnv)
	}
	return env
}

// sendConfig gives the init what it needs to build the jail from inside.
func sendConfig(s *starting) error {
	e := s.e
	caps := e.spec.Caps
	if caps == nil {
		caps = DefaultCaps
	}
	cfg := &initConfig{Rootfs: e.spec.Rootfs, Hostname: e.spec.Hostname, Caps: caps,
		KillGrace: e.sup.opts.KillGrace.Milliseconds(), Seccomp: e.spec.Seccomp,
		Rlimits: e.spec.Rlimits, Network: s.network, NAT: s.nat, PTYs: e.spec.Limits.PTYs, Tmp: e.spec.Limits.Tmp,
		Token: e.token, Linger: e.spec.Linger.Milliseconds(), Orphan: e.sup.orphanGrace().Milliseconds()}
	if err := e.ctl.send(&message{Op: opConfig, Config: cfg}); err != nil {
		return fmt.Errorf("send config: %w", err)
	}
	return nil
}

// awaitReady waits for the init to say ready, or which of its steps failed.
func awaitReady(s *starting) error {
	type result struct {
		m   *message
		err error
	}
	rc := make(chan result, 1)
	go func() {
		m, files, err := s.e.ctl.recv()
		closeAll(files)
		rc <- result{m, err}
	}()
	var r result
	select {
	case r = <-rc:
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-time.After(startReadyTimeout):
		return fmt.Errorf("init did not become ready within %v", startReadyTimeout)
	}
	switch {
	case r.err != nil:
		return fmt.Errorf("init exited during setup: %w", r.err)
	case r.m.Op == opFailed && r.m.Step != nil:
		return r.m.Step
	case r.m.Op != opReady:
		return fmt.Errorf("init sent %q instead of ready", r.m.Op)
	}
	return nil
}

// searchable checks that the tenant's root (an unprivileged host uid) can
// reach the rootfs: every directory above it must be searchable by others.
func searchable(rootfs string) error {
	for dir := filepath.Dir(rootfs); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return &os.PathError{Op: "stat", Path: dir, Err: err}
		}
		if st.Mode&0o001 == 0 {
			return fmt.Errorf("rootfs %s: %s is not searchable by the tenant's ids (mode %04o); run: chmod o+x %s",
				rootfs, dir, st.Mode&0o7777, dir)
		}
		if dir == "/" {
			return nil
		}
	}
}

// logWriter turns an init's stderr (Go panics, fatal errors) into log lines.
type logWriter struct {
	log         *slog.Logger
	tenant, env string
	mu          sync.Mutex
	buf         []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for len(w.buf) > 0 {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > 4096 {
				i = len(w.buf)
			} else {
				break
			}
		}
		w.log.Warn("init: "+string(w.buf[:i]), "tenant", w.tenant, "env", w.env)
		if i < len(w.buf) {
			i++
		}
		w.buf = w.buf[i:]
	}
	return len(p), nil
}
