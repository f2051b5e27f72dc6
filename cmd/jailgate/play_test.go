package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestPlay(t *testing.T) {
	cast := filepath.Join(t.TempDir(), "s.cast")
	os.WriteFile(cast, []byte(`{"version":2,"width":80,"height":24,"timestamp":1}
[0.1,"o","hello "]
[0.2,"i","typed"]
[0.3,"r","100x30"]
[0.5,"o","world\r\n"]
`), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"play", "--speed", "100", cast}, &out, &errb); code != 0 {
		t.Fatalf("play: exit %d: %s", code, errb.String())
	}
	if out.String() != "hello world\r\n" {
		t.Errorf("play wrote %q, want the output events only", out.String())
	}
	os.WriteFile(cast, []byte("not json\n"), 0o600)
	if code := run([]string{"play", cast}, &out, &errb); code == 0 {
		t.Error("play accepted a file that is not asciicast")
	}
}
