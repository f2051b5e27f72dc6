//go:build linux

package main

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInotifyCountsAreHers: Eve opens inotify instances until the kernel
// refuses. Her user namespace used to be created by host root, so the
// kernel charged every instance in it to root's count as well (ucounts:
// each level up to the initial namespace charges the uid that created the
// namespace): her 128 inotify_init1 calls left Alice and host root (the
// test process here) failing with EMFILE (issue 16, item 2). Now her
// namespace is created by her own host uid: her instances count against
// her own fs.inotify.max_user_instances, and both Alice's and root's next
// inotify_init1 work.
func TestInotifyCountsAreHers(t *testing.T) {
	max := readInt(t, "/proc/sys/fs/inotify/max_user_instances")
	l := armed(t, "")
	eve := l.client(t, "bob")
	line := holdLine(t, eve, fmt.Sprintf("attack inotify %d", max+50))
	if want := fmt.Sprintf("OPENED %d too many open files", max); line != want {
		t.Errorf("Eve's inotify loop: %q, want %q (her own host uid's whole allowance, no more)", line, want)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Errorf("host root's inotify_init1 while Eve holds hers: %v", err)
	} else {
		unix.Close(fd)
	}
	if got := must(t, l.client(t, "alice"), "attack inotify 1 </dev/null"); got != "OPENED 1 <nil>\n" {
		t.Errorf("Alice's inotify_init1 while Eve holds hers: %q", got)
	}
}
