package rootfs

import (
	"errors"
	"log/slog"
	"time"

	"github.com/jailgate/jailgate/statedir"
)

// ImageDir is where image NAME lives under the state directory.
func ImageDir(stateDir, name string) string { return statedir.New(stateDir).Image(name) }

// DefaultGrace is how long a tenant's layer stays mounted after her last
// environment ended: a login within it finds the layer mounted, and one
// after it mounts the layer again.
const DefaultGrace = 30 * time.Second

// ErrLayerInUse is wrapped by RemoveLayer's error while the tenant's layer
// is mounted.
var ErrLayerInUse = errors.New("layer in use")

// LayerOptions tune Layers.
type LayerOptions struct {
	// Grace is how long a layer stays mounted after its last release
	// (0: DefaultGrace).
	Grace time.Duration
	// Copy gives every tenant a shifted copy of her image as her lower
	// layer, as kernels that cannot idmap it get anyway: a test hook, so
	// the fallback runs on any kernel.
	Copy bool
	// Logger gets a line per mount and unmount, and says when and why the
	// shifted copy stands in for the idmapped mount (nil: slog.Default()).
	Logger *slog.Logger
}
