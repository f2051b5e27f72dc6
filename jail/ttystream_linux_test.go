package jail_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestTTYOutputGathers: with more output waiting than the line discipline
// hands out per read(2) (4 KiB), a Read fills more of the buffer (one
// read(2) per Read averaged 3.9 KiB here); every byte arrives in order,
// and the end of the slave is io.EOF.
func TestTTYOutputGathers(t *testing.T) {
	master, slave := jailtest.RawPTY(t)
	_, out := jail.TTYStreams(master)
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i % 251)
	}
	go func() {
		slave.Write(want)
		slave.Close()
	}()
	var got bytes.Buffer
	reads := 0
	buf := make([]byte, 32<<10)
	for {
		n, err := out.Read(buf)
		got.Write(buf[:n])
		reads++
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got.Len(), err)
		}
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d bytes, not the %d written", got.Len(), len(want))
	}
	if mean := got.Len() / reads; mean < 8<<10 {
		t.Errorf("%d Reads of %d bytes on average: one read(2) of the line discipline each", reads, mean)
	}
	t.Logf("%d Reads, %d bytes on average", reads, got.Len()/reads)
}

// TestTTYOutputNoWait: a Read returns what is there, without waiting for
// the buffer to fill, and waits (up to the read deadline, then io.EOF)
// when nothing is.
func TestTTYOutputNoWait(t *testing.T) {
	master, slave := jailtest.RawPTY(t)
	_, out := jail.TTYStreams(master)
	if _, err := slave.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := out.Read(buf)
		if n != 1 || err != nil || buf[0] != 'x' {
			t.Errorf("Read = %d, %v (%q); want 1 byte x", n, err, buf[:n])
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Read of one byte waited for more")
	}
	master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := out.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read past the deadline = %d, %v; want 0, io.EOF", n, err)
	}
}
