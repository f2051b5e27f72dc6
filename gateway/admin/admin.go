// Package admin is the running server's admin socket. It lets `jailgate
// reload` ask the running server to re-read its configuration and hear the
// outcome, which SIGHUP cannot report. It is a unix socket in the state directory, mode 0600, so only
// the server's own user (root) may connect; one request per connection:
//
//	client                                   server (jailgate serve)
//	  │── {"op":"reload","config":FILE}\n ──►  │ FILE must be the file it serves
//	  │                                        │ re-reads it, as SIGHUP does
//	  │◄── {"ok":true,"summary":…,"changes":[…]}\n
//	  │ or {"ok":false,"problems":["FILE:LINE: field: message",…]}\n
//	  │ or {"ok":false,"error":"…"}\n          (not a configuration problem)
//
//	  │── {"op":"upgrade","config":FILE}\n ─►  │ starts the binary at its own path on
//	  │                                        │ the listeners it holds (cmd/jailgate)
//	  │◄── {"ok":true,"old_pid":…,"new_pid":…,"old_version":…,"new_version":…}\n
//	  │ or {"ok":false,"problems":[…],"error":"why the new process failed"}\n
//
// The server hands its listening socket over at an upgrade (Inherit): the
// new process answers on the same path, and the old one lets go of it
// without removing it (Listener.Release).
package admin

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/statedir"
)

// ErrNoServer is wrapped by Call's error when no server listens on the
// state directory's admin socket.
var ErrNoServer = errors.New("no jailgate server is running")

// ErrServerRunning is wrapped by Listen's error when another server already
// serves the state directory.
var ErrServerRunning = errors.New("another jailgate server is running")

// timeout bounds one request: a reload revokes sessions and checks every
// tenant's limits, which is quick but not instant; an upgrade waits for the
// new process to be ready (cmd/jailgate's upgradeTimeout, less than this).
const timeout = time.Minute

// The requests the server answers.
const (
	OpReload  = "reload"  // re-read the configuration (jailgate reload)
	OpUpgrade = "upgrade" // hand over to the binary at its path (jailgate upgrade)
)

// Request is what `jailgate reload` or `jailgate upgrade` asks of the server.
type Request struct {
	Op     string `json:"op"`     // OpReload or OpUpgrade
	Config string `json:"config"` // the file the operator means; absolute
}

// Reply is the server's answer.
type Reply struct {
	OK       bool     `json:"ok"`
	Summary  string   `json:"summary,omitempty"`  // what is in force now
	Changes  []string `json:"changes,omitempty"`  // what the reload changed
	Problems []string `json:"problems,omitempty"` // a rejected config: FILE:LINE: field: message each
	Error    string   `json:"error,omitempty"`    // a refusal that is not about the config

	// An upgrade's outcome: the process that answered and the one that
	// serves now, with their versions.
	OldPID     int    `json:"old_pid,omitempty"`
	NewPID     int    `json:"new_pid,omitempty"`
	OldVersion string `json:"old_version,omitempty"`
	NewVersion string `json:"new_version,omitempty"`
}

// Listen listens on stateDir's admin socket, mode 0600, replacing
// one left by a server that is gone. It fails with ErrServerRunning while
// another server answers on it: two servers on one state directory would
// mount the same tenant layers.
func Listen(stateDir string) (*Listener, error) {
	path := statedir.New(stateDir).AdminSocket()
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: %w for this state_dir", path, ErrServerRunning)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	// Bound under a temporary name, made owner-only, then renamed into
	// place: net.Listen creates the socket with the umask's mode, and
	// nobody else may connect in between.
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &Listener{UnixListener: ul, path: path}, nil
}

// Inherit takes over l, the admin socket of stateDir a previous server
// listened on and handed over at an upgrade, with no check for a running
// server: that one is handing it over.
func Inherit(l net.Listener, stateDir string) (*Listener, error) {
	ul, ok := l.(*net.UnixListener)
	if !ok {
		return nil, fmt.Errorf("admin socket: inherited %T, want a unix listener", l)
	}
	ul.SetUnlinkOnClose(false)
	return &Listener{UnixListener: ul, path: statedir.New(stateDir).AdminSocket()}, nil
}

// Listener is the admin socket. It removes its path when closed, as a clean
// shutdown should leave no socket behind.
type Listener struct {
	*net.UnixListener
	path string
}

// Close stops listening and removes the socket.
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}

// Release stops listening in this process but leaves the socket in place:
// the old side of an upgrade, whose successor listens on the same socket.
func (l *Listener) Release() error { return l.UnixListener.Close() }

// Path is where the socket is.
func (l *Listener) Path() string { return l.path }

// Serve answers requests on l with handle, one connection at a time
// (reloads are not meant to overlap), until l is closed.
func Serve(l net.Listener, handle func(Request) Reply) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		serveConn(c, handle)
	}
}

func serveConn(c net.Conn, handle func(Request) Reply) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	var req Request
	line, err := bufio.NewReader(c).ReadBytes('\n')
	var reply Reply
	switch {
	case err != nil:
		return
	case json.Unmarshal(line, &req) != nil:
		reply.Error = "admin request: not JSON"
	case req.Op != OpReload && req.Op != OpUpgrade:
		reply.Error = fmt.Sprintf("admin request: unknown op %q", req.Op)
	default:
		reply = handle(req)
	}
	b, _ := json.Marshal(reply)
	c.Write(append(b, '\n'))
}

// Call sends req to the server on stateDir and returns its reply, or
// an error wrapping ErrNoServer when none is running there.
func Call(stateDir string, req Request) (*Reply, error) {
	path := statedir.New(stateDir).AdminSocket()
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w for state_dir %s (no admin socket %s)", ErrNoServer, stateDir, path)
	case errors.Is(err, unix.ECONNREFUSED):
		return nil, fmt.Errorf("%w for state_dir %s (%s is left by one that is gone)", ErrNoServer, stateDir, path)
	case err != nil:
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: no reply: %w", path, err)
	}
	var reply Reply
	if err := json.Unmarshal(line, &reply); err != nil {
		return nil, fmt.Errorf("admin socket %s: bad reply: %w", path, err)
	}
	return &reply, nil
}
