package jail

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Feature is one kernel facility the jail uses, and whether this host has it.
type Feature struct {
	Name   string
	OK     bool
	Detail string
}

// Features probes the host for what environments need: user namespaces,
// the cgroup hierarchy, overlayfs, idmapped mounts and seccomp.
func Features() []Feature {
	var fs []Feature
	n, _ := os.ReadFile("/proc/sys/user/max_user_namespaces")
	max := strings.TrimSpace(string(n))
	fs = append(fs, Feature{"user namespaces", max != "" && max != "0", "max_user_namespaces=" + max})
	version := "none"
	if m, err := newCgroups("/sys/fs/cgroup", "jailgate"); err == nil {
		version = m.Version()
	}
	fs = append(fs, Feature{"cgroups", version != "none", version})
	filesystems, _ := os.ReadFile("/proc/filesystems")
	fs = append(fs, Feature{"overlayfs", strings.Contains(string(filesystems), "\toverlay\n"), ""})
	var uts unix.Utsname
	unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	fs = append(fs, Feature{"idmapped mounts", kernelAtLeast(release, 5, 12), "kernel " + release})
	_, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	fs = append(fs, Feature{"seccomp", err == nil, ""})
	return fs
}

// kernelAtLeast compares a release string such as "6.18.44-fc" with maj.min.
func kernelAtLeast(release string, maj, min int) bool {
	var a, b int
	for i, part := range strings.SplitN(release, ".", 3)[:2] {
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		if i == 0 {
			a = n
		} else {
			b = n
		}
	}
	return a > maj || (a == maj && b >= min)
}
