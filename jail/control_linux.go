package jail

// The control protocol between the gateway and an environment's init.
//
//	gateway (jail.Supervisor)                      init (PID 1 of the environment)
//	   │ makeBlank: socketpair(SOCK_SEQPACKET), owner uid, cgroup (a pool slot's, or hers)
//	   │ clone as the owner: control socket fd 3 ────►│ (new namespaces, unmapped, every capability ambient)
//	   │── prepare {caps} ───────────────────────────►│ bounding set cut to caps, spare threads
//	   │◄──────────────────────────────────── ready   │ (blank: waits here, in the pool or not)
//	   │ start: id maps written, cgroup placed,        │
//	   │ network: the mode's setup from outside        │
//	   │── config {rootfs, hostname, caps, network…}   │
//	   │   [+ rootfs O_PATH fd, listening socket] ────►│ setresuid 0, her bounding set, mounts, masks,
//	   │                                               │ pivot_root, cgroup namespace, hostname, network
//	   │                                               │ (lo up), close fds, rlimits, dumpable=0, caps,
//	   │                                               │ no_new_privs, seccomp
//	   │◄──────────────────────────── ready | failed {StepError}
//	   │── spawn {id, proc} [+ stdin, stdout, stderr] ►│ fork/exec (pipes handed in by the gateway)
//	   │◄──────────────── spawned {id, pid} [+ PTY master] | spawned {id, err}
//	   │── signal {id, sig} ──────────────────────────►│ kill(pid, sig)
//	   │── kill {id} ─────────────────────────────────►│ SIGHUP+SIGCONT to the group, SIGKILL after grace
//	   │── dial {id, network, addr} ──────────────────►│ connect inside the network namespace
//	   │◄──────────────────────── dialed {id} [+ socket] | dialed {id, err}
//	   │── listen {id, network, addr} ────────────────►│ tcp: listen in the network namespace;
//	   │                                               │ unix: mkdir 0700 + listen in the jail's fs
//	   │◄──────────────── listening {id} [+ listener] | listening {id, err}
//	   │── unlisten {id} ─────────────────────────────►│ unix: remove the socket and its directory
//	   │◄────────────────────── exit {id, code, signal}  (when a spawned process ends)
//	   │   EOF (gateway gone or environment closed) ──►│ exit: the pid namespace dies with it
//
// Every message is one JSON datagram; fds travel as SCM_RIGHTS on the same
// datagram. The gateway treats everything the init sends as coming from the
// tenant: sizes are bounded, ids are checked against its own table, and a
// malformed message ends the environment.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Message operations.
const (
	opPrepare = "prepare" // a blank's first message: the bounding set it may keep (Config.Caps); answered ready
	opConfig  = "config"
	opReady   = "ready"
	opFailed  = "failed"
	opSpawn   = "spawn"
	opSpawned = "spawned"
	opSignal  = "signal"
	opKill    = "kill"
	opDial    = "dial"
	opDialed  = "dialed"
	opExit    = "exit"

	opListen    = "listen"
	opListening = "listening"
	opUnlisten  = "unlisten"

	// The environment's lifetime (init_peers_linux.go).
	opHello   = "hello"   // an adopting gateway's first message: the record's token, its pid
	opWelcome = "welcome" // the init's answer: Code = sessions held by every gateway
	opHold    = "hold"    // Code: +1 a session more, -1 one fewer; linger and orphan grace as now configured
	opHeld    = "held"    // the answer to a hold with an ID: Code = sessions in all; Err "ending" if too late
	opBye     = "bye"     // a clean detach (stop, the old side of an upgrade): linger applies, not orphan grace
	opStatus  = "status"  // asked with an ID; answered with Code = sessions, Peers = gateway pids
	opStop    = "stop"    // end the environment: SIGTERM to everything inside, the end after Code ms
)

// maxMsg bounds one control datagram; maxFds the fds riding on it.
const (
	maxMsg = 64 << 10
	maxFds = 3
)

// initConfig is what the init needs to build the environment.
type initConfig struct {
	Rootfs    string            `json:"rootfs"`
	Hostname  string            `json:"hostname"`
	Caps      []string          `json:"caps"`
	KillGrace int64             `json:"kill_grace_ms"`
	Seccomp   string            `json:"seccomp,omitempty"`
	Rlimits   map[string]uint64 `json:"rlimits,omitempty"`
	Network   string            `json:"network"`             // a key of networkModes, never ""
	NAT       *natNet           `json:"nat,omitempty"`       // NetworkNAT: eth0's address, route, MTU, resolv.conf
	PTYs      int64             `json:"ptys,omitempty"`      // Limits.PTYs
	Tmp       int64             `json:"tmp,omitempty"`       // Limits.Tmp
	Token     string            `json:"token,omitempty"`     // what an adopting gateway's hello must show
	Linger    int64             `json:"linger_ms,omitempty"` // EnvSpec.Linger
	Orphan    int64             `json:"orphan_ms,omitempty"` // Options.OrphanGrace
}

// message is every control datagram; unused fields stay empty.
type message struct {
	Op      string      `json:"op"`
	ID      uint64      `json:"id,omitempty"`
	Config  *initConfig `json:"config,omitempty"`
	Proc    *ProcSpec   `json:"proc,omitempty"`
	Pid     int         `json:"pid,omitempty"`
	Sig     int         `json:"sig,omitempty"`
	Network string      `json:"network,omitempty"`
	Addr    string      `json:"addr,omitempty"`
	Code    int         `json:"code,omitempty"`
	Step    *StepError  `json:"step,omitempty"`
	Err     string      `json:"err,omitempty"`
	Token   string      `json:"token,omitempty"`     // hello
	Linger  *int64      `json:"linger_ms,omitempty"` // hold: the environment's linger now
	Orphan  *int64      `json:"orphan_ms,omitempty"` // hold: the orphan grace now
	Peers   []int       `json:"peers,omitempty"`     // status: the connected gateways' pids
}

// ctlConn is one end of the control socket.
type ctlConn struct {
	c *net.UnixConn
}

// newCtlConn wraps a SOCK_SEQPACKET socket fd; f is closed afterwards.
func newCtlConn(f *os.File) (*ctlConn, error) {
	defer f.Close()
	fc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc, ok := fc.(*net.UnixConn)
	if !ok {
		fc.Close()
		return nil, errors.New("control socket: not a unix socket")
	}
	return &ctlConn{c: uc}, nil
}

// send writes m with fds attached. A message the other end could not read
// whole (more than maxMsg) is not sent: the init read it truncated and
// ended, taking every session of the environment with it (issue 16).
func (c *ctlConn) send(m *message, fds ...int) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return &RequestTooLargeError{Size: len(b), Max: maxMsg}
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.c.WriteMsgUnix(b, oob, nil)
	return err
}

// recv reads one message and the fds on it. Received fds are close-on-exec.
func (c *ctlConn) recv() (*message, []*os.File, error) {
	buf := make([]byte, maxMsg)
	oob := make([]byte, unix.CmsgSpace(maxFds*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	files, ferr := parseRights(oob[:oobn])
	if ferr != nil || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		if ferr == nil {
			ferr = errors.New("truncated message")
		}
		return nil, nil, fmt.Errorf("control message: %w", ferr)
	}
	if n == 0 {
		closeAll(files)
		return nil, nil, errors.New("control message: empty")
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(files)
		return nil, nil, fmt.Errorf("control message: %w", err)
	}
	return &m, files, nil
}

// close closes the socket.
func (c *ctlConn) close() error { return c.c.Close() }

// closeWrite says this end sends nothing more; the other end reads EOF.
func (c *ctlConn) closeWrite() error { return c.c.CloseWrite() }

// parseRights turns SCM_RIGHTS control data into files.
func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			closeAll(files)
			return nil, err
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "fd"))
		}
	}
	return files, nil
}

// closeAll closes every file.
func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
