package jail

import (
	"fmt"
	"io"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// The init binary runs in three stages, named by _JAILGATE_INIT, so that
// the tenant's user namespace is created by her own host uid rather than
// by root. The kernel charges a namespace's counts (ucounts: inotify
// instances and watches, mqueues, user namespaces, …) at every level up to
// the initial namespace to the uid that created each namespace
// (kernel/ucount.c inc_ucount, ns->ucounts from create_user_ns). Created by
// root, every tenant's inotify instances counted against root's
// fs.inotify.max_user_instances, and one tenant's 128 left every other
// tenant and the host's root without inotify (issue 16, item 2).
//
//	gateway (root) ── clone ──► stageStart (host, her base uid), moved into her cgroup, then its stdin closed
//	stageStart ── clone(CLONE_NEWUSER|…|CLONE_PARENT) ──► stageMaps (her namespaces, no ids mapped yet)
//	gateway writes /proc/<pid>/{uid,gid}_map, closes initMapsFd
//	stageMaps ── execve ──► stageInit (her root, all capabilities in her namespace)
const (
	stageStart = "start" // on the host as her base uid: clone the init's namespaces
	stageMaps  = "maps"  // in her namespaces: wait for the id maps, then exec the init
	stageInit  = "1"     // the init (InitMain's setup and serve)
)

// initMapsFd is the read end of a pipe the gateway closes once it has
// written the new namespace's id maps (the gateway is root on the host, so
// it may map her whole range: user_namespaces(7), "Defining user and group
// ID mappings"; stageStart, unprivileged, could map only its own uid).
const initMapsFd = 5

// listenEnv tells each stage that fd initListenFd is the listening control
// socket (an adoptable environment); without it that fd is nothing of ours.
const listenEnv = "_JAILGATE_LISTEN=1"

// hasListener reports whether this stage was given the listening socket.
func hasListener() bool { return os.Getenv("_JAILGATE_LISTEN") == "1" }

// initCloneflags are the init's namespaces: user, mount, pid, UTS, IPC,
// network (every network mode gets its own) and cgroup.
const initCloneflags = unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// initStage runs stageStart or stageMaps, which never return; for the
// init itself it returns.
func initStage() {
	switch os.Getenv("_JAILGATE_INIT") {
	case stageStart:
		stageFail(startInit())
	case stageMaps:
		stageFail(awaitMaps())
	}
}

// stageFail reports a stage's failure on stderr (the gateway's log) and
// exits; a stage that succeeded has exec'd or exits 0.
func stageFail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "jailgate init:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startInit is stageStart: the gateway started it as her base uid and gid,
// in her cgroup. It clones the init's namespaces, which are then hers:
// their owner and the uid every count in them is charged to is her base
// uid. CLONE_PARENT makes the new process the gateway's child, which waits
// for it and kills it like any child; this process only says its pid (on
// stdout) and exits.
func startInit() error {
	// The kernel copies the creator's RLIMIT_NPROC into the namespace as
	// the bound of all its processes together (kernel/user_namespace.c,
	// enforced_nproc_rlimit: root's is not enforced, hers is). Her pids
	// cgroup is the bound that counts; raise the soft limit to the hard one.
	// Wait until the gateway has moved this process into her cgroup (v1:
	// cgroup.procs; v2 started it there): it closes our stdin then.
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return fmt.Errorf("wait to be placed in the cgroup: %w", err)
	}
	var nproc unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NPROC, &nproc) == nil {
		nproc.Cur = nproc.Max
		unix.Setrlimit(unix.RLIMIT_NPROC, &nproc)
	}
	files := []*os.File{os.NewFile(initCtlFd, "control"), os.NewFile(initRootfsFd, "rootfs"), os.NewFile(initMapsFd, "maps")}
	env := []string{"_JAILGATE_INIT=" + stageMaps, "GOMAXPROCS=1"}
	if hasListener() {
		files = append(files, os.NewFile(initListenFd, "listen")) // fd 6: an adoptable environment's socket
		env = append(env, listenEnv)
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       os.Args,
		Env:        env,
		Stderr:     os.Stderr,
		ExtraFiles: files,
		// Her namespaces are created first, then the others in them
		// (clone(2)): they are all owned by her user namespace.
		SysProcAttr: &unix.SysProcAttr{Cloneflags: initCloneflags | unix.CLONE_PARENT},
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("clone the namespaces as uid %d: %w", os.Geteuid(), err)
	}
	_, err := fmt.Println(cmd.Process.Pid)
	return err
}

// awaitMaps is stageMaps: the first process in her namespaces, whose ids
// mean nothing there until the gateway writes the maps. It waits for
// that, then execs the init: as her root (uid 0 in her namespace) the exec
// gives it every capability in her namespace (capabilities(7), "Capabilities
// and execution of programs by root"), which the exec into this stage,
// unmapped, did not.
func awaitMaps() error {
	var b [1]byte
	for {
		n, err := unix.Read(initMapsFd, b[:])
		if err == unix.EINTR {
			continue
		}
		if n == 0 || err != nil {
			break
		}
	}
	unix.Close(initMapsFd)
	if uid := os.Getuid(); uid != 0 {
		return fmt.Errorf("no id maps from the gateway (uid %d in the new namespace)", uid)
	}
	env := []string{"_JAILGATE_INIT=" + stageInit, "GOMAXPROCS=1"}
	if hasListener() {
		env = append(env, listenEnv)
	}
	return fmt.Errorf("exec the init: %w", unix.Exec("/proc/self/exe", os.Args, env))
}
