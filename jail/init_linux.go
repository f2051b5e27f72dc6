package jail

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// initCtlFd is the control socket, the one fd the init inherits. Its
// rootfs (O_PATH) and, for an adoptable environment, its listening
// socket arrive with its config (SCM_RIGHTS).
const initCtlFd = 3

// initName is the init's command name, NUL-terminated for prctl; a blank
// one (no tenant's yet) is blankName.
var (
	initName  = []byte("jailgate-init\x00")
	blankName = []byte("jailgate-blank\x00")
)

// rootfsDir is the tenant's rootfs, O_PATH, as the gateway opened it.
var rootfsDir *os.File

// IsInit reports whether this process was started as an environment's init
// (or as the jail's SFTP server, which the init starts the same way).
// cmd/jailgate's main, and the TestMain of packages whose tests start
// environments, call it first: `if jail.IsInit() { jail.InitMain() }`.
func IsInit() bool {
	if isSFTP() {
		return true
	}
	if len(os.Args) != 2 || os.Args[1] != "init" {
		return false
	}
	switch os.Getenv("_JAILGATE_INIT") {
	case stageStart, stageInit:
		return true
	}
	return false
}

// initDroppedSignals are the signals a tenant can send PID 1 that would
// end it. The fatal ones (SEGV, BUS, FPE, ILL, TRAP, SYS, ABRT) matter
// most: sent with kill(2) the Go runtime treats them as a crash and dies
// with a goroutine dump of every thread, ending her environment (issue 16).
// Caught with Notify, a kill-sent one goes to the channel while a real
// fault (not SI_USER) still panics as before: the init then behaves as
// the kernel's rule for a PID 1 without a handler (signal(7), pid_namespaces(7)).
var initDroppedSignals = []os.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGQUIT, unix.SIGUSR1,
	unix.SIGUSR2, unix.SIGPIPE, unix.SIGALRM, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU,
	unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGABRT, unix.SIGTRAP, unix.SIGSYS,
	unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGSTKFLT, unix.SIGPWR}

// InitMain runs the environment's init: it sets up the jail from inside the
// new namespaces, then serves the gateway's requests as PID 1. It never
// returns.
func InitMain() {
	if isSFTP() {
		sftpMain()
	}
	initStage() // the stages before the init (init_stage_linux.go)
	// All setup happens on one thread; namespaces and mounts are per process
	// here (they were created by clone), but chdir/pivot_root are not racy
	// with other goroutines on a locked thread (runc Init does the same).
	runtime.LockOSThread()
	// Shown as the command of PID 1 in the tenant's ps and top (the kernel
	// would otherwise say "exe", after /proc/self/exe).
	setComm(blankName)
	// A tenant may signal PID 1 from inside; catch and drop what would
	// otherwise end it (SIGKILL and SIGSTOP from inside the namespace are
	// dropped by the kernel). Caught, not ignored: an ignored disposition
	// would be inherited by every process the init spawns.
	drop := make(chan os.Signal, 16)
	signal.Notify(drop, initDroppedSignals...)
	go func() {
		for range drop {
		}
	}()
	os.Unsetenv("_JAILGATE_INIT")
	os.Unsetenv("GOMAXPROCS")

	ctl, err := newCtlConn(os.NewFile(initCtlFd, "control"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "jailgate init:", err)
		os.Exit(1)
	}
	prepare(ctl)
	cfg, listen := awaitIdentity(ctl)
	setComm(initName)
	if serr := becomeRoot(); serr != nil {
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	if serr := dropBoundingSet(cfg); serr != nil {
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	if serr := setup(cfg); serr != nil {
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	if err := ctl.send(&message{Op: opReady}); err != nil {
		os.Exit(1)
	}
	serve(ctl, listen, cfg)
}

// prepare does, blank, what no tenant's identity changes: it cuts the
// bounding set to what any tenant it may serve keeps (the gateway sends
// that set; her own cut at identity is then usually nothing), makes the
// init's spare threads, after the cut, which is a signal round trip to
// every thread per capability, and mounts proc and sys with their masks
// (prepareMounts), after the threads, whose /proc entries it masks.
func prepare(ctl *ctlConn) {
	m, files, err := ctl.recv()
	closeAll(files)
	if err != nil {
		os.Exit(0) // the gateway let go of it before it was ready
	}
	if m.Op != opPrepare || m.Config == nil {
		fmt.Fprintln(os.Stderr, "jailgate init: no prepare message on the control socket")
		os.Exit(1)
	}
	if serr := dropBoundingSet(m.Config); serr != nil {
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	prewarmThreads(initThreads)
	if serr := prepareMounts(); serr != nil { // after prewarm: it masks their /proc entries
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	if err := ctl.send(&message{Op: opReady}); err != nil {
		os.Exit(0)
	}
}

// awaitIdentity waits, blank, for the config that makes the init hers:
// the gateway has written her id maps by then, and sends her rootfs and,
// for an adoptable environment, the listening control socket with it. A
// blank the pool lets go of sees EOF and exits quietly.
func awaitIdentity(ctl *ctlConn) (*initConfig, *net.UnixListener) {
	m, files, err := ctl.recv()
	if err != nil {
		os.Exit(0) // nothing of anyone's ran here; the gateway logs its side
	}
	if m.Op != opConfig || m.Config == nil || len(files) == 0 {
		fmt.Fprintln(os.Stderr, "jailgate init: no configuration on the control socket")
		os.Exit(1)
	}
	rootfsDir = files[0]
	if len(files) < 2 {
		return m.Config, nil
	}
	l, err := net.FileListener(files[1])
	files[1].Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jailgate init: listening socket:", err)
		return m.Config, nil
	}
	ul, _ := l.(*net.UnixListener)
	return m.Config, ul
}

// setComm sets the init's command name (prctl PR_SET_NAME, this thread:
// PID 1's is the one ps shows).
func setComm(name []byte) {
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0)
}

// setup runs every step that turns a process in fresh namespaces into a
// jail, in order. Each step returns a StepError naming what failed.
func setup(cfg *initConfig) *StepError {
	steps := []func(*initConfig) *StepError{
		mountRootfs,    // bind the rootfs, move proc and sys in (masked: prepareMounts), dev, devpts, shm, tmp
		pivotRoot,      // no path to the host remains
		newCgroupNS,    // her view of cgroups rooted at hers, where the gateway placed the init
		setHostname,    // UTS namespace
		networkUp,      // the network mode's inside: lo up (none has nothing more)
		closeFds,       // nothing of the gateway's stays open (CVE-2024-21626)
		setRlimits,     // the tenant's rlimits, while raising them is still allowed
		dropPrivileges, // non-dumpable, caps, no_new_privs
		installSeccomp, // last: the deny-list filter on every thread
	}
	for _, step := range steps {
		if err := step(cfg); err != nil {
			return err
		}
	}
	return nil
}

// setHostname sets the environment's hostname.
func setHostname(cfg *initConfig) *StepError {
	if cfg.Hostname == "" {
		return nil
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return stepErr("hostname", "sethostname "+cfg.Hostname, "", err)
	}
	return nil
}

// closeFds closes every fd but the control socket, so no host file, socket
// or directory stays reachable from inside (CVE-2024-21626: a leaked
// directory fd is a way out of the new root).
func closeFds(*initConfig) *StepError {
	// Go's runtime holds fds of its own (epoll, pidfds) that must stay open,
	// so every fd past the control socket becomes close-on-exec rather than
	// closed; the rootfs fd is closed outright. Spawned processes get 0-2
	// explicitly and nothing else.
	rootfsDir.Close()
	if err := unix.CloseRange(initCtlFd+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return stepErr("fds", "close_range", "", err)
	}
	return nil
}

// initThreads is how many OS threads the init makes before the tenant's
// first process runs. The init is in her pids cgroup: once a fork bomb has
// filled pids.max, the Go runtime could not create a thread when it needs
// one (a goroutine blocked in a syscall) and would die (newosproc), taking
// her environment with it. Threads it made earlier stay parked and are
// reused, so it keeps serving her (and can still end the bomb).
const initThreads = 4

// prewarmThreads makes the runtime create n threads: each of n goroutines
// holds its own thread (LockOSThread) until all are up, then lets go; the
// threads stay in the runtime's idle pool.
func prewarmThreads(n int) {
	var up sync.WaitGroup
	release := make(chan struct{})
	var done sync.WaitGroup
	for i := 0; i < n; i++ {
		up.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			up.Done()
			<-release
			runtime.UnlockOSThread()
		}()
	}
	up.Wait()
	close(release)
	done.Wait()
}
