package gateway

import "context"

// Connections is how many admitted connections the server holds.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Drain waits until every connection the server took (admitted or still
// in its handshake) has ended by itself, or until ctx is done (false).
// Unlike Shutdown it tells nobody anything and ends nothing: it is the old
// process of an upgrade, whose successor accepts the new connections,
// letting its own run their course, as an old sshd does. Call it once
// every Serve has returned, so that no connection is being taken while it
// waits.
func (s *Server) Drain(ctx context.Context) bool {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
