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

// Fds the init inherits from the gateway (ExtraFiles order).
const (
	initCtlFd    = 3 // the control socket
	initRootfsFd = 4 // the tenant's rootfs, O_PATH
)

// initName is the init's command name, NUL-terminated for prctl.
var initName = []byte("jailgate-init\x00")

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
	case stageStart, stageMaps, stageInit:
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
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&initName[0])), 0, 0, 0)
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
	listen := inheritedListener() // before closeFds makes it close-on-exec
	os.Unsetenv("_JAILGATE_INIT")
	os.Unsetenv("_JAILGATE_LISTEN")
	os.Unsetenv("GOMAXPROCS")

	ctl, err := newCtlConn(os.NewFile(initCtlFd, "control"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "jailgate init:", err)
		os.Exit(1)
	}
	m, _, err := ctl.recv()
	if err != nil || m.Op != opConfig || m.Config == nil {
		fmt.Fprintln(os.Stderr, "jailgate init: no configuration on the control socket")
		os.Exit(1)
	}
	cfg := m.Config
	if serr := dropBoundingSet(cfg); serr != nil {
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	// Before setup, so that the threads exist when their /proc entries are
	// masked (initPrivate); after dropBoundingSet, which is cheaper with
	// few threads.
	prewarmThreads(initThreads)
	if serr := setup(cfg); serr != nil {
		ctl.send(&message{Op: opFailed, Step: serr})
		os.Exit(1)
	}
	if err := ctl.send(&message{Op: opReady}); err != nil {
		os.Exit(1)
	}
	serve(ctl, listen, cfg)
}

// inheritedListener is the listening control socket at initListenFd, or
// nil when the gateway passed none (no Options.RecordDir).
func inheritedListener() *net.UnixListener {
	if !hasListener() {
		return nil
	}
	f := os.NewFile(initListenFd, "listen")
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jailgate init: listening socket:", err)
		return nil
	}
	ul, _ := l.(*net.UnixListener)
	return ul
}

// setup runs every step that turns a process in fresh namespaces into a
// jail, in order. Each step returns a StepError naming what failed.
func setup(cfg *initConfig) *StepError {
	steps := []func(*initConfig) *StepError{
		mountRootfs,    // rslave /, bind the rootfs, proc, sys, dev, devpts, shm, tmp
		maskPaths,      // hide and freeze the dangerous parts of /proc and /sys
		pivotRoot,      // no path to the host remains
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
	unix.Close(initRootfsFd)
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
const initThreads = 12

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
