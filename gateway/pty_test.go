package gateway

import (
	"bytes"
	"encoding/binary"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// openSSHModes is a terminal-mode blob as OpenSSH's client encodes it
// (ssh_tty_make_modes, from a Linux xterm): control characters, input,
// local and output flags, then the speeds, then TTY_OP_END.
var openSSHModes = []byte{
	0x01, 0x00, 0x00, 0x00, 0x03, // VINTR ^C
	0x02, 0x00, 0x00, 0x00, 0x1c, // VQUIT ^\
	0x03, 0x00, 0x00, 0x00, 0x7f, // VERASE DEL
	0x04, 0x00, 0x00, 0x00, 0x15, // VKILL ^U
	0x05, 0x00, 0x00, 0x00, 0x04, // VEOF ^D
	0x06, 0x00, 0x00, 0x00, 0xff, // VEOL disabled
	0x24, 0x00, 0x00, 0x00, 0x01, // ICRNL
	0x32, 0x00, 0x00, 0x00, 0x01, // ISIG
	0x33, 0x00, 0x00, 0x00, 0x01, // ICANON
	0x35, 0x00, 0x00, 0x00, 0x01, // ECHO
	0x46, 0x00, 0x00, 0x00, 0x01, // OPOST
	0x48, 0x00, 0x00, 0x00, 0x01, // ONLCR
	0x80, 0x00, 0x00, 0x96, 0x00, // TTY_OP_ISPEED 38400
	0x81, 0x00, 0x00, 0x96, 0x00, // TTY_OP_OSPEED 38400
	0x00, // TTY_OP_END
}

func TestDecodeModesOpenSSH(t *testing.T) {
	modes, err := decodeModes(openSSHModes)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint8]uint32{
		gossh.VINTR: 3, gossh.VQUIT: 28, gossh.VERASE: 127, gossh.VKILL: 21, gossh.VEOF: 4, gossh.VEOL: 255,
		gossh.ICRNL: 1, gossh.ISIG: 1, gossh.ICANON: 1, gossh.ECHO: 1, gossh.OPOST: 1, gossh.ONLCR: 1,
		gossh.TTY_OP_ISPEED: 38400, gossh.TTY_OP_OSPEED: 38400,
	}
	if len(modes) != len(want) {
		t.Errorf("decoded %d modes, want %d: %v", len(modes), len(want), modes)
	}
	for op, v := range want {
		if got, ok := modes[op]; !ok || got != v {
			t.Errorf("opcode %d = %d (present %v), want %d", op, got, ok, v)
		}
	}
}

func TestDecodeModesEdges(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		want    map[uint8]uint32
		wantErr bool
	}{
		{"empty", nil, map[uint8]uint32{}, false},
		{"only end", []byte{0}, map[uint8]uint32{}, false},
		{"no end", []byte{53, 0, 0, 0, 0}, map[uint8]uint32{53: 0}, false},
		{"data after end ignored", []byte{0, 53, 0, 0, 0, 1}, map[uint8]uint32{}, false},
		{"undefined opcode stops", []byte{53, 0, 0, 0, 1, 160, 1, 2}, map[uint8]uint32{53: 1}, false},
		{"opcode 159 has an argument", []byte{159, 0, 0, 0, 9, 0}, map[uint8]uint32{159: 9}, false},
		{"last value wins", []byte{53, 0, 0, 0, 1, 53, 0, 0, 0, 0, 0}, map[uint8]uint32{53: 0}, false},
		{"truncated argument", []byte{53, 0, 0}, nil, true},
	}
	for _, tc := range cases {
		got, err := decodeModes(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v", tc.name, err)
			continue
		}
		if tc.wantErr {
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

// ptyReqPayload marshals a pty-req as x/crypto's client does.
func ptyReqPayload(term string, cols, rows uint32, modes []byte) []byte {
	return gossh.Marshal(&ptyRequestMsg{Term: term, Cols: cols, Rows: rows, Width: cols * 8, Height: rows * 8, Modes: string(modes)})
}

func TestParsePtyReq(t *testing.T) {
	tty, err := parsePtyReq(ptyReqPayload("xterm-256color", 132, 43, openSSHModes))
	if err != nil {
		t.Fatal(err)
	}
	if tty.Term != "xterm-256color" || tty.Cols != 132 || tty.Rows != 43 || tty.Modes[gossh.ECHO] != 1 {
		t.Errorf("parsed %+v", tty)
	}
	if tty, err := parsePtyReq(ptyReqPayload("xterm", 1<<20, 1<<20, nil)); err != nil || tty.Cols != 0xffff || tty.Rows != 0xffff {
		t.Errorf("huge sizes: %+v, %v; want clamped to 65535", tty, err)
	}
	for name, payload := range map[string][]byte{
		"empty":          nil,
		"short":          ptyReqPayload("xterm", 80, 24, nil)[:10],
		"term with NUL":  ptyReqPayload("xterm\x00", 80, 24, nil),
		"term with \\n":  ptyReqPayload("x\nterm", 80, 24, nil),
		"term too long":  ptyReqPayload(string(bytes.Repeat([]byte("x"), 300)), 80, 24, nil),
		"truncated mode": ptyReqPayload("xterm", 80, 24, []byte{53, 0}),
	} {
		if _, err := parsePtyReq(payload); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	rows, cols, err := parseWindowChange(gossh.Marshal(&windowChangeMsg{Cols: 111, Rows: 33}))
	if err != nil || rows != 33 || cols != 111 {
		t.Errorf("window-change: %d %d %v", rows, cols, err)
	}
	if _, _, err := parseWindowChange([]byte{0, 0, 0}); err == nil {
		t.Error("short window-change accepted")
	}
}

func FuzzPtyModes(f *testing.F) {
	f.Add(openSSHModes)
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{53, 0, 0})
	f.Add([]byte{200, 1, 2, 3})
	f.Add(ptyReqPayload("xterm", 80, 24, openSSHModes))
	f.Fuzz(func(t *testing.T, b []byte) {
		if modes, err := decodeModes(b); err == nil {
			for op := range modes {
				if op == 0 || op >= 160 {
					t.Fatalf("decoded opcode %d", op)
				}
			}
			// Re-encoding the decoded modes decodes to the same.
			var enc []byte
			for op, v := range modes {
				enc = append(enc, op)
				enc = binary.BigEndian.AppendUint32(enc, v)
			}
			again, err := decodeModes(append(enc, 0))
			if err != nil || len(again) != len(modes) {
				t.Fatalf("round trip: %v, %v vs %v", err, again, modes)
			}
		}
		// The whole request, with b as the payload and as the modes.
		parsePtyReq(b)
		parsePtyReq(ptyReqPayload("xterm", 80, 24, b))
		parseWindowChange(b)
	})
}
