package rootfs

import (
	"errors"
	"os"

	"github.com/jailgate/jailgate/statedir"
)

// Detach unmounts the layers no environment uses and leaves the others
// mounted for the environments that outlive this gateway (a stop or an
// upgrade: the next gateway adopts them, and its start sweeps what is left
// of those that ended meanwhile). Later Acquires fail.
func (l *Layers) Detach() error {
	l.mu.Lock()
	l.closed = true
	var idle []*layer
	for _, ly := range l.tenants {
		if ly.timer != nil {
			ly.timer.Stop()
		}
		if ly.refs == 0 {
			idle = append(idle, ly)
		}
	}
	l.mu.Unlock()
	var errs []error
	for _, ly := range idle {
		ly.mu.Lock()
		if ly.mounted {
			if err := l.unmount(ly, true); err != nil {
				errs = append(errs, err)
			}
		}
		ly.mu.Unlock()
	}
	return errors.Join(errs...)
}

// SweepMounts unmounts the layers an earlier gateway left mounted whose
// tenants have no live environment (keep: those that do), at start.
func (l *Layers) SweepMounts(keep map[string]bool) error {
	root := statedir.New(l.stateDir).LayerMounts()
	ents, _ := os.ReadDir(root)
	var errs []error
	for _, e := range ents {
		l.mu.Lock()
		_, ours := l.tenants[e.Name()]
		l.mu.Unlock()
		if keep[e.Name()] || ours {
			continue
		}
		if err := unmountLayer(pathsOf(l.stateDir, e.Name()), true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
