package jail

// SetPoolFill makes s's pool run f before it makes each blank.
func SetPoolFill(s *Supervisor, f func()) {
	s.pool.mu.Lock()
	s.pool.fill = f
	s.pool.mu.Unlock()
}

// Pooled says whether env started from a pool blank.
func Pooled(env Env) bool { return env.(*handle).pooled }

// InitPid is env's init's host pid.
func InitPid(env Env) int { return env.(*handle).cmd.Process.Pid }
