package jail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
)

// Listen implements Env: the init makes the listening socket inside the
// environment and hands it over; the gateway accepts on it here.
func (e *environment) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	m := &message{Op: opListen, Network: network, Addr: addr}
	r, err := e.ask(ctx, m)
	if err == nil {
		err = checkListener(r.ln, network, addr)
	}
	if err != nil {
		r.close()
		if m.ID != 0 {
			// The init may have made a unix socket for it: remove it.
			e.request(&message{Op: opUnlisten, ID: m.ID})
		}
		return nil, err
	}
	l := &envListener{Listener: r.ln, env: e, id: m.ID, closed: make(chan struct{})}
	go l.closeWithEnv()
	return l, nil
}

// ask sends m, a request answered with an fd (dial, listen), under a new
// id and waits for the answer. An answer that lands after ctx ended is
// closed: by ask if it is waiting already, by dispatch if it comes later.
func (e *environment) ask(ctx context.Context, m *message) (dialReply, error) {
	id, err := e.newID()
	if err != nil {
		return dialReply{}, err
	}
	m.ID = id
	c := make(chan dialReply, 1)
	e.pmu.Lock()
	e.dials[id] = c
	e.pmu.Unlock()
	forget := func() {
		e.pmu.Lock()
		delete(e.dials, id)
		e.pmu.Unlock()
	}
	if err := e.request(m); err != nil {
		forget()
		return dialReply{}, err
	}
	select {
	case r := <-c:
		return r, r.err
	case <-ctx.Done():
		forget()
		select {
		case r := <-c:
			r.close()
		default:
		}
		return dialReply{}, ctx.Err()
	}
}

// listenResult turns a listening message into a listener.
func listenResult(m *message, files []*os.File) dialReply {
	defer closeAll(files)
	if m.Err != "" {
		return dialReply{err: errors.New(m.Err)}
	}
	if len(files) != 1 {
		return dialReply{err: errors.New("init sent no listener")}
	}
	l, err := net.FileListener(files[0])
	return dialReply{ln: l, err: err}
}

// checkListener checks that what the init, the tenant's own process, sent
// is the listener asked for: the right kind and, for a fixed TCP port,
// that port.
func checkListener(l net.Listener, network, addr string) error {
	switch l := l.(type) {
	case nil:
		return errors.New("init sent no listener")
	case *net.TCPListener:
		if network == "unix" {
			break
		}
		_, port, _ := net.SplitHostPort(addr)
		if port != "" && port != "0" && port != strconv.Itoa(l.Addr().(*net.TCPAddr).Port) {
			return fmt.Errorf("init listens on %v, not port %s", l.Addr(), port)
		}
		return nil
	case *net.UnixListener:
		if network == "unix" {
			return nil
		}
	}
	return fmt.Errorf("init sent a %T for a %s listener", l, network)
}

// close closes whatever the reply holds.
func (r dialReply) close() {
	if r.conn != nil {
		r.conn.Close()
	}
	if r.ln != nil {
		r.ln.Close()
	}
}

// envListener is a listener inside an environment. Closing it tells the
// init, which removes a unix socket and its directory; it closes by itself
// when the environment ends, so that Accept returns.
type envListener struct {
	net.Listener
	env    *environment
	id     uint64
	once   sync.Once
	closed chan struct{}
}

func (l *envListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
		l.env.request(&message{Op: opUnlisten, ID: l.id}) // fails only if the environment is gone
	})
	return err
}

// closeWithEnv closes the listener when its environment ends first.
func (l *envListener) closeWithEnv() {
	select {
	case <-l.env.done:
		l.Close()
	case <-l.closed:
	}
}
