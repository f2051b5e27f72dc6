package jail

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by an environment that has ended.
var ErrClosed = errors.New("environment closed")

// ErrEnding is a join refused by an init that is ending its environment
// (no session for its linger): the session starts a new one.
var ErrEnding = errors.New("environment ending")

// RequestTooLargeError is a request too large for one control message
// (the command, its arguments and its environment together). That one
// request fails; the environment goes on. Its text says nothing of the
// host and is meant for the tenant.
type RequestTooLargeError struct {
	Size, Max int // the encoded request and the bound, in bytes
}

func (e *RequestTooLargeError) Error() string {
	return fmt.Sprintf("this session's command and environment are too large (%d KiB; at most %d KiB): send fewer or smaller environment variables",
		(e.Size+1023)/1024, e.Max/1024)
}

// StepError says which step of an environment's start failed, with the
// operation and path involved: a step of the gateway's side (start: "spec",
// "rootfs", "cgroup", "clone", "network", …) or of the init's (setup:
// "mount", "pivot_root", "caps", …). The init's travel to the gateway as
// JSON, so Err is flattened to text on the way; on the gateway's side Cause
// keeps the error itself for errors.Is and errors.As.
type StepError struct {
	Step  string `json:"step"`           // e.g. "rootfs", "mount", "pivot_root", "caps"
	Op    string `json:"op"`             // the syscall or action, with its flags; may be empty
	Path  string `json:"path,omitempty"` // the path involved, if any
	Err   string `json:"err"`            // the cause, e.g. "operation not permitted"
	Cause error  `json:"-"`              // the cause as an error, where it did not cross the socket
}

func (e *StepError) Error() string {
	switch {
	case e.Path != "":
		return fmt.Sprintf("%s: %s %s: %s", e.Step, e.Op, e.Path, e.Err)
	case e.Op != "":
		return fmt.Sprintf("%s: %s: %s", e.Step, e.Op, e.Err)
	default:
		return fmt.Sprintf("%s: %s", e.Step, e.Err)
	}
}

// Unwrap returns the cause, if it is still an error.
func (e *StepError) Unwrap() error { return e.Cause }

// stepErr builds a StepError from a Go error.
func stepErr(step, op, path string, err error) *StepError {
	return &StepError{Step: step, Op: op, Path: path, Err: err.Error(), Cause: err}
}
