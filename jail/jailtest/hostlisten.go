package jailtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// Listen implements jail.Env on the host, with the real manager's rules
// for "unix": the socket's directory is made for it (0700; it must not
// exist) and removed with it by Close. Listeners still open when the
// environment ends are closed.
func (e *hostEnv) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var l net.Listener
	var err error
	dir := ""
	switch network {
	case "tcp", "tcp4", "tcp6":
		l, err = net.Listen(network, addr)
	case "unix":
		if !filepath.IsAbs(addr) || filepath.Clean(addr) != addr {
			return nil, fmt.Errorf("listen: bad socket path %q", addr)
		}
		dir = filepath.Dir(addr)
		if err = os.Mkdir(dir, 0o700); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		if l, err = net.Listen("unix", addr); err != nil {
			os.Remove(dir)
		} else {
			os.Chmod(addr, 0o600)
		}
	default:
		err = fmt.Errorf("listen: network %q not supported", network)
	}
	if err != nil {
		return nil, err
	}
	hl := &hostListener{Listener: l, env: e, dir: dir}
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	if e.ended {
		l.Close()
		if dir != "" {
			os.Remove(dir)
		}
		return nil, errEnded
	}
	e.listeners[hl] = true
	return hl, nil
}

// hostListener is a listener of the fake; Close also removes a unix
// socket's directory.
type hostListener struct {
	net.Listener
	env  *hostEnv
	dir  string
	once sync.Once
}

func (l *hostListener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.Listener.Close() // removes the unix socket itself
		if l.dir != "" {
			os.Remove(l.dir)
		}
		l.env.m.mu.Lock()
		delete(l.env.listeners, l)
		l.env.m.mu.Unlock()
	})
	return err
}
