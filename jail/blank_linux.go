package jail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// blank is an init in fresh namespaces that is nobody's yet: cloned by its
// owner uid, its Go runtime up, unmapped, waiting on its control socket for
// an identity (init_stage_linux.go). The pool keeps a few ready
// (pool_linux.go); a login that finds none makes one on the spot in her own
// cgroup (a cold start). Either way her environment's start then only
// assigns it (start_linux.go): id maps, cgroup, network, config.
type blank struct {
	name  string       // the environment's name (its cgroup, record and socket)
	ctl   *ctlConn     // the gateway's end of the control socket
	cmd   *initProc    // the init, by pidfd
	cg    cgroupHandle // its cgroup: a pool slot's, or hers (cold)
	slot  string       // the pool cgroup it was born in (poolSlot), "" if born in hers
	owner uint32       // the host uid that created its user namespace
	caps  uint64       // the bounding set it kept (prepare): a tenant with more cannot have it
	log   *logWriter   // its stderr, into the gateway's log
	made  time.Time
}

// makeBlank starts a blank init that keeps caps in its bounding set.
// tenant "" makes it for the pool, in a slot cgroup of its own with
// poolLimits and at low priority; otherwise it is born in her cgroup with
// her limits (a cold start, no move later). base is her base uid, its
// owner when the Supervisor has no owner range.
func (s *Supervisor) makeBlank(tenant string, limits Limits, base uint32, caps []string) (_ *blank, err error) {
	mask, err := CapMask(caps)
	if err != nil {
		return nil, err
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	b := &blank{name: envName(time.Now(), hex.EncodeToString(rnd[:])), made: time.Now(), caps: mask,
		log: &logWriter{log: s.log, tenant: tenant}}
	b.log.env = b.name
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	child := os.NewFile(uintptr(fds[1]), "control")
	defer child.Close() // on a failure before clone
	unix.SetNonblock(fds[0], true)
	if b.ctl, err = newCtlConn(os.NewFile(uintptr(fds[0]), "control")); err != nil {
		return nil, err
	}
	undo = append(undo, func() { b.ctl.close() })
	if b.owner, err = s.owners.claim(base); err != nil {
		return nil, err
	}
	undo = append(undo, func() { s.owners.release(b.owner) })
	if b.owner == 0 {
		return nil, fmt.Errorf("no owner uid for a blank environment") // never root's: Prestart needs a range
	}
	if tenant == "" {
		b.slot = s.pool.nextSlot()
		b.cg, err = s.cg.Create(b.slot, b.name, poolLimits)
	} else {
		b.cg, err = s.cg.Create(tenant, b.name, limits)
	}
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { b.cg.Destroy(); s.cg.RemoveSlot(b.slot) })
	err = b.clone(s, child)
	// Only the init may hold its end: ours would hide its exit (EOF), and a
	// prepare that fails (her pids limit reached: the runtime cannot make
	// its threads) would wait out startReadyTimeout.
	child.Close()
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { b.cmd.Process.Kill(); b.cmd.Wait() })
	// Her processes are the OOM killer's to take, not the gateway's -1000.
	if err := resetOOMScore(b.cmd.Process.Pid); err != nil {
		return nil, err
	}
	if err := b.prepare(caps); err != nil {
		return nil, err
	}
	return b, nil
}

// prepare has the blank cut its bounding set to caps and make its spare
// threads (the init's prepare), and waits until it has.
func (b *blank) prepare(caps []string) error {
	if err := b.ctl.send(&message{Op: opPrepare, Config: &initConfig{Caps: caps}}); err != nil {
		return fmt.Errorf("send prepare: %w", err)
	}
	return awaitInit(context.Background(), b.ctl, "prepare")
}

// coldBlank makes a blank in her cgroup for a login that found none in the
// pool, at most coldStarts at a time: each start blocks a gateway thread
// in exec, wait and cgroup writes, and a burst (1000 session-mode logins)
// made the gateway grow a thread per start while the two CPUs thrashed.
// The pool's refill does not wait here: it never holds a login back.
func (s *Supervisor) coldBlank(ctx context.Context, tenant string, limits Limits, base uint32, caps []string) (*blank, error) {
	select {
	case s.cold <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.cold }()
	return s.makeBlank(tenant, limits, base, caps)
}

// coldStarts bounds the cold starts under way (coldBlank).
const coldStarts = 8

// poolLimits bound a blank init until it is hers: it runs nothing but its
// own runtime.
var poolLimits = Limits{Pids: 64, Memory: 256 << 20}

// discard ends a blank that will never be anyone's.
func (b *blank) discard(s *Supervisor) {
	b.ctl.close() // it sees EOF and exits
	b.cmd.Process.Kill()
	b.cmd.Wait()
	b.cg.Destroy()
	s.cg.RemoveSlot(b.slot)
	s.owners.release(b.owner)
}

// clone starts the init's first stage as the owner uid, moves it into the
// blank's cgroup before it clones (style b.4: the init and everything it
// starts are born there), and takes the init by pidfd.
func (b *blank) clone(s *Supervisor, child *os.File) error {
	var p stagePipes
	defer p.close()
	if err := p.open(b.log); err != nil {
		return err
	}
	starter := starterCmd(s.opts.InitPath, b.owner, child, &p)
	if err := b.cg.Start(starter); err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	p.holdR.Close()
	p.holdR = nil
	if b.slot != "" { // the pool's: whatever it clones runs at low priority until it is hers
		unix.Setpriority(unix.PRIO_PROCESS, starter.Process.Pid, poolNice)
	}
	if err := b.cg.Adopt(starter.Process.Pid); err != nil {
		starter.Process.Kill()
		starter.Wait()
		return fmt.Errorf("join cgroup: %w", err)
	}
	// Placed: the starter may clone now.
	p.holdW.Close()
	p.holdW = nil
	p.closeChildEnds()
	pid, err := p.readPid(starter)
	if err != nil {
		return err
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("init %d: %w", pid, err)
	}
	// It waits for its config, so it is still there: the pidfd names it.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		proc.Kill()
		return fmt.Errorf("init %d: pidfd: %w", pid, err)
	}
	b.cmd = &initProc{Process: proc, child: true, pidfd: pidfd}
	return nil
}

// poolNice is a pool blank's nice value while it starts and waits: a
// refill never takes CPU from a login.
const poolNice = 10

// renice sets every thread of pid to nice 0 (nice is per thread), once a
// pool blank is hers: her processes inherit it.
func renice(pid int) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			unix.Setpriority(unix.PRIO_PROCESS, tid, 0)
		}
	}
}

// stagePipes are the pipes between the gateway and the init's first stage.
type stagePipes struct {
	holdR, holdW *os.File // the starter's stdin: closed once it is in its cgroup
	pidR, pidW   *os.File // the starter's stdout: the init's pid
	errW         *os.File // stderr of the starter and the init, copied into the log
}

func (p *stagePipes) open(w *logWriter) error {
	var err error
	if p.holdR, p.holdW, err = os.Pipe(); err != nil {
		return err
	}
	if p.pidR, p.pidW, err = os.Pipe(); err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	p.errW = errW
	go func() {
		io.Copy(w, errR)
		errR.Close()
	}()
	return nil
}

// closeChildEnds closes the gateway's copies of what the stage holds.
func (p *stagePipes) closeChildEnds() {
	for _, f := range []**os.File{&p.pidW, &p.errW} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// close closes every pipe end still open.
func (p *stagePipes) close() {
	p.closeChildEnds()
	for _, f := range []*os.File{p.holdR, p.holdW, p.pidR} {
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

// starterCmd is the init's first stage (init_stage_linux.go): the gateway
// binary (or the sealed init) on the host as the owner uid and gid, with
// no supplementary groups, with the control socket as fd 3. It keeps
// CAP_SYS_ADMIN, and nothing else, for its one clone: hosts that refuse
// user namespaces to unprivileged users (Ubuntu's
// kernel.apparmor_restrict_unprivileged_userns, Debian's
// kernel.unprivileged_userns_clone=0) allow them to a holder of it, and in
// the new namespace it means nothing on the host. The creator's euid, not
// its capabilities, is what the kernel charges the counts to.
func starterCmd(initPath string, owner uint32, child *os.File, p *stagePipes) *exec.Cmd {
	return &exec.Cmd{
		Path: initPath,
		Args: []string{"jailgate", "init"},
		// One P: the init mostly waits, and each P costs it heap caches
		// and a GC worker (≈ 250 KiB of its resident memory).
		Env:        []string{"_JAILGATE_INIT=" + stageStart, "GOMAXPROCS=1"},
		ExtraFiles: []*os.File{child}, // fd 3
		Stdin:      p.holdR,
		Stdout:     p.pidW,
		Stderr:     p.errW,
		SysProcAttr: &unix.SysProcAttr{
			Credential:  &syscall.Credential{Uid: owner, Gid: owner, Groups: []uint32{}},
			AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN},
		},
	}
}

// resetOOMScore sets the init's oom_score_adj to 0 before it starts
// anything: a child inherits its parent's score, and the gateway runs at
// -1000 (as sshd's listener does) so that the OOM killer never takes the
// door. A tenant at -1000 would be the one thing neither the host's nor her
// cgroup's OOM killer may kill (proc(5): oom_score_adj).
func resetOOMScore(pid int) error {
	p := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	if err := os.WriteFile(p, []byte("0"), 0); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
