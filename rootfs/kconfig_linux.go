package rootfs

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// projectQuotaOptions are the kernel options the project backend needs:
// ext4's prjquota needs the quota core and the v2 quota format (ext4 loads
// it even for its hidden quota inodes), XFS's its own quota support.
var projectQuotaOptions = []string{"CONFIG_QUOTA", "CONFIG_QFMT_V2", "CONFIG_XFS_QUOTA"}

// ProjectQuotaGaps names the kernel options of projectQuotaOptions this
// kernel was built without, from /proc/config.gz or /boot/config-RELEASE;
// nil if it has them all or its config cannot be read.
func ProjectQuotaGaps() []string {
	r, closeFn := kernelConfig()
	if r == nil {
		return nil
	}
	defer closeFn()
	set := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && (v == "y" || v == "m") {
			set[k] = true
		}
	}
	if sc.Err() != nil {
		return nil
	}
	var gaps []string
	for _, o := range projectQuotaOptions {
		if !set[o] {
			gaps = append(gaps, o)
		}
	}
	return gaps
}

// kernelConfig opens the running kernel's build config, or returns nil.
func kernelConfig() (io.Reader, func()) {
	if f, err := os.Open("/proc/config.gz"); err == nil {
		if z, err := gzip.NewReader(f); err == nil {
			return z, func() { z.Close(); f.Close() }
		}
		f.Close()
	}
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return nil, nil
	}
	f, err := os.Open("/boot/config-" + unix.ByteSliceToString(u.Release[:]))
	if err != nil {
		return nil, nil
	}
	return f, func() { f.Close() }
}
