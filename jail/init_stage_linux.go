package jail

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// The init binary runs in two stages, named by _JAILGATE_INIT, so that
// the tenant's user namespace is not created by root. The kernel charges a
// namespace's counts (ucounts: inotify instances and watches, mqueues,
// user namespaces, …) at every level up to the initial namespace to the
// uid that created each namespace (kernel/ucount.c inc_ucount,
// ns->ucounts from create_user_ns). Created by root, every tenant's inotify
// instances counted against root's fs.inotify.max_user_instances, and one
// tenant's 128 left every other tenant and the host's root without inotify
// (issue 16, item 2). The creator is a host uid of the environment's own
// (its owner: owners_linux.go; her base uid where the gateway has no owner
// range), so her counts are hers alone.
//
// Nothing in these stages depends on who the environment is for: a blank
// init waits on its control socket for an identity (blank_linux.go), so
// the pool can start it before anyone logs in (issue 20).
//
//	gateway (root) ── clone ──► stageStart (host, the owner uid), moved into a cgroup, then its stdin closed
//	stageStart ── clone(CLONE_NEWUSER|…|CLONE_PARENT), every capability ambient ──► stageInit
//	stageInit waits for its config; the gateway writes /proc/<pid>/{uid,gid}_map before sending it
//	stageInit becomes her root (setresuid 0), then builds the jail (setup)
const (
	stageStart = "start" // on the host as the owner uid: clone the init's namespaces
	stageInit  = "1"     // the init (InitMain's setup and serve)
)

// initCloneflags are the init's namespaces: user, mount, pid, UTS, IPC and
// network (every network mode gets its own). Its cgroup namespace comes
// later (newCgroupNamespace), once the gateway has placed it in her
// cgroup: a blank init is born in a pool cgroup.
const initCloneflags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWNET

// initStage runs stageStart, which never returns; for the init itself it
// returns.
func initStage() {
	if os.Getenv("_JAILGATE_INIT") == stageStart {
		stageFail(startInit())
	}
}

// stageFail reports a stage's failure on stderr (the gateway's log) and
// exits; a stage that succeeded exits 0.
func stageFail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "jailgate init:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startInit is stageStart: the gateway started it as the owner uid, in a
// cgroup. It clones the init's namespaces, which the owner uid then owns:
// every count in them is charged to it. CLONE_PARENT makes the new process
// the gateway's child, which waits for it and kills it like any child;
// this process only says its pid (on stdout) and exits.
//
// The init keeps every capability through its exec as ambient ones: it is
// unmapped until the gateway writes the id maps, and an exec by an
// unmapped uid would otherwise drop them all (capabilities(7)). They mean
// something only in its own user namespace, and setup cuts them to the
// tenant's set before anything of hers runs.
func startInit() error {
	// Wait until the gateway has moved this process into the cgroup (v1:
	// cgroup.procs; v2 started it there): it closes our stdin then.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("wait to be placed in the cgroup: %w", err)
	}
	// The kernel copies the creator's RLIMIT_NPROC into the namespace as
	// the bound of all its processes together (kernel/user_namespace.c,
	// enforced_nproc_rlimit: root's is not enforced, this uid's is). Her
	// pids cgroup is the bound that counts; raise the soft limit to the hard one.
	var nproc unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NPROC, &nproc) == nil {
		nproc.Cur = nproc.Max
		unix.Setrlimit(unix.RLIMIT_NPROC, &nproc)
	}
	caps, err := boundingCaps()
	if err != nil {
		return err
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       os.Args,
		Env:        []string{"_JAILGATE_INIT=" + stageInit, "GOMAXPROCS=1"},
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{os.NewFile(initCtlFd, "control")},
		// Her namespaces are created first, then the others in them
		// (clone(2)): they are all owned by her user namespace.
		SysProcAttr: &unix.SysProcAttr{Cloneflags: initCloneflags | unix.CLONE_PARENT, AmbientCaps: caps},
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("clone the namespaces as uid %d: %w", os.Geteuid(), err)
	}
	_, err = fmt.Println(cmd.Process.Pid)
	return err
}

// boundingCaps lists the capabilities in this process's bounding set: a
// clone into a new user namespace holds all of them there, and only those
// may become ambient.
func boundingCaps() ([]uintptr, error) {
	var caps []uintptr
	for c := uintptr(0); c <= lastCap(); c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, c, 0, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("prctl PR_CAPBSET_READ %d: %w", c, err)
		}
		if in == 1 {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

// becomeRoot makes the init her root once the gateway has written the id
// maps: uid and gid 0 in her namespace, on every thread (Go's syscall
// package runs setresuid and setresgid on all of them). Going from an
// unmapped uid to 0 keeps the permitted set and fills the effective one
// from it (capabilities(7), "Effect of user ID changes on capabilities").
func becomeRoot() *StepError {
	if err := syscall.Setresgid(0, 0, 0); err != nil {
		return stepErr("ids", "setresgid 0", "", fmt.Errorf("%w (no gid map written)", err))
	}
	if err := syscall.Setresuid(0, 0, 0); err != nil {
		return stepErr("ids", "setresuid 0", "", fmt.Errorf("%w (no uid map written)", err))
	}
	return nil
}
