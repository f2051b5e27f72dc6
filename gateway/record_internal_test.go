package gateway

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// appendJSONString decodes to what encoding/json makes of the same bytes
// as a Go string (invalid UTF-8 as U+FFFD), for terminal-ish input and
// random bytes.
func TestAppendJSONString(t *testing.T) {
	inputs := [][]byte{
		nil, []byte("plain"), []byte("quote \" backslash \\ slash /"),
		[]byte("\x1b[1;31mred\x1b[0m\r\n\t\x00\x07\x7f"), []byte("naïve 日本 \u2028\u2029 😀"),
		{0xff, 'a', 0xc3}, {0xe6, 0x97}, // invalid and cut UTF-8
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		b := make([]byte, rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		enc := appendJSONString([]byte("x"), in)[1:]
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as %s: not JSON: %v", in, enc, err)
		}
		ref, _ := json.Marshal(string(in))
		var want string
		json.Unmarshal(ref, &want)
		if got != want {
			t.Errorf("%q: decoded %q, want %q (encoded %s)", in, got, want, enc)
		}
	}
}
