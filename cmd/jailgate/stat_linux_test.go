package main

import (
	"os"
	"syscall"
)

// fileUID returns a file's owner on the host.
func fileUID(fi os.FileInfo) uint32 {
	return fi.Sys().(*syscall.Stat_t).Uid
}
