package jail

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by an environment that has ended.
var ErrClosed = errors.New("environment closed")

// StepError says which setup step of an environment's init failed, with the
// operation and path involved. It travels from the init to the gateway as
// JSON, so Err is flattened to text on the way.
type StepError struct {
	Step string `json:"step"`           // e.g. "mount", "pivot_root", "caps"
	Op   string `json:"op"`             // the syscall or action, with its flags
	Path string `json:"path,omitempty"` // the path involved, if any
	Err  string `json:"err"`            // the cause, e.g. "operation not permitted"
}

func (e *StepError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("%s: %s %s: %s", e.Step, e.Op, e.Path, e.Err)
	}
	return fmt.Sprintf("%s: %s: %s", e.Step, e.Op, e.Err)
}

// stepErr builds a StepError from a Go error.
func stepErr(step, op, path string, err error) *StepError {
	return &StepError{Step: step, Op: op, Path: path, Err: err.Error()}
}
