package jail

import (
	"os"
	"os/exec"
	"testing"
)

// TestSealedInit: the copy runs from its /proc/self/fd path, and nobody
// can change it afterwards, through its fd or a path reopened for writing.
func TestSealedInit(t *testing.T) {
	image, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	f, path, err := SealedInit(image)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := exec.Command(path).Run(); err != nil {
		t.Errorf("running the sealed copy (%s): %v", path, err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Error("the sealed copy took a write through its fd")
	}
	if w, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		_, werr := w.Write([]byte("x"))
		w.Close()
		if werr == nil {
			t.Error("the sealed copy took a write through a reopened path")
		}
	}
	if err := f.Truncate(0); err == nil {
		t.Error("the sealed copy could be truncated")
	}
	got := make([]byte, len(image))
	if n, _ := f.ReadAt(got, 0); n != len(image) || string(got) != string(image) {
		t.Error("the sealed copy differs from the image")
	}
}
