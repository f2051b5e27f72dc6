package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ErrInvalid is matched by every validation error, so callers can tell a bad
// configuration (exit 2) from a failure to read it:
// errors.Is(err, config.ErrInvalid).
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in a configuration, at a position and a field.
type Error struct {
	Pos   Pos    // where the problem is; Pos.File may be a keys_file
	Field string // dotted path, e.g. users.alice.limits.memory; may be empty
	Msg   string // what is wrong, and the fix when there is one
}

// Error formats e compiler style: FILE:LINE: field: message.
func (e *Error) Error() string {
	s := e.Pos.File
	if e.Pos.Line > 0 {
		s += fmt.Sprintf(":%d", e.Pos.Line)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// String formats p as FILE:LINE:COL, leaving out what is unknown.
func (p Pos) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
		if p.Col > 0 {
			s += fmt.Sprintf(":%d", p.Col)
		}
	}
	return s
}

// problems collects every *Error found in one configuration.
type problems struct {
	file string // the configuration file: its problems sort first
	errs []*Error
}

// add records a problem; format and args make the message.
func (p *problems) add(pos Pos, field, format string, args ...any) {
	p.errs = append(p.errs, &Error{Pos: pos, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil or every problem, sorted by file (the configuration
// first), line and column, duplicates dropped, as an errors.Join.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int {
		return cmp.Or(
			compareBool(a.Pos.File != p.file, b.Pos.File != p.file),
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
		)
	})
	seen := map[Error]bool{}
	var errs []error
	for _, e := range p.errs {
		if !seen[*e] {
			seen[*e] = true
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
