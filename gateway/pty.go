package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"

	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/jail"
)

// Terminal mode opcodes with a meaning for the decoder (RFC 4254 section 8).
const (
	ttyOpEnd        = 0   // TTY_OP_END: the end of the modes
	ttyOpFirstUndef = 160 // opcodes 160 to 255 are undefined and stop parsing
)

// maxTermLen bounds the TERM name of a pty-req.
const maxTermLen = 256

// ptyRequestMsg is the payload of a "pty-req" (RFC 4254 section 6.2).
type ptyRequestMsg struct {
	Term   string
	Cols   uint32 // characters
	Rows   uint32
	Width  uint32 // pixels, unused
	Height uint32
	Modes  string // encoded terminal modes
}

// windowChangeMsg is the payload of a "window-change" (RFC 4254 section 6.7).
type windowChangeMsg struct {
	Cols   uint32
	Rows   uint32
	Width  uint32
	Height uint32
}

// parsePtyReq decodes a pty-req payload into the terminal to allocate. A
// TERM with control characters, spaces or over 256 bytes is refused: it
// becomes an environment variable of the tenant's shell.
func parsePtyReq(payload []byte) (*jail.TTY, error) {
	var m ptyRequestMsg
	if err := gossh.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("parse pty-req: %w", err)
	}
	if !validTerm(m.Term) {
		return nil, errors.New("parse pty-req: invalid TERM")
	}
	modes, err := decodeModes([]byte(m.Modes))
	if err != nil {
		return nil, fmt.Errorf("parse pty-req: %w", err)
	}
	return &jail.TTY{Term: m.Term, Rows: clamp16(m.Rows), Cols: clamp16(m.Cols), Modes: modes}, nil
}

// parseWindowChange decodes a window-change payload.
func parseWindowChange(payload []byte) (rows, cols uint16, err error) {
	var m windowChangeMsg
	if err := gossh.Unmarshal(payload, &m); err != nil {
		return 0, 0, fmt.Errorf("parse window-change: %w", err)
	}
	return clamp16(m.Rows), clamp16(m.Cols), nil
}

// decodeModes decodes RFC 4254 encoded terminal modes: opcode bytes, each
// of 1 to 159 followed by a uint32 argument, up to TTY_OP_END (0) or the
// first undefined opcode (160 to 255), which stop parsing. Modes without
// TTY_OP_END are accepted (the encoding ends with the string); a truncated
// argument is an error. A repeated opcode keeps its last value.
func decodeModes(b []byte) (map[uint8]uint32, error) {
	modes := map[uint8]uint32{}
	for len(b) > 0 {
		op := b[0]
		if op == ttyOpEnd || op >= ttyOpFirstUndef {
			break
		}
		if len(b) < 5 {
			return nil, fmt.Errorf("terminal modes: opcode %d: truncated argument", op)
		}
		modes[op] = binary.BigEndian.Uint32(b[1:5])
		b = b[5:]
	}
	return modes, nil
}

// validTerm reports whether term is printable ASCII without spaces and not
// too long; empty is valid (no TERM).
func validTerm(term string) bool {
	if len(term) > maxTermLen {
		return false
	}
	for i := 0; i < len(term); i++ {
		if term[i] <= ' ' || term[i] > '~' {
			return false
		}
	}
	return true
}

// clamp16 narrows a wire size to a terminal size.
func clamp16(v uint32) uint16 {
	if v > 0xffff {
		return 0xffff
	}
	return uint16(v)
}
