package config

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the suffixes ParseSize accepts, binary and decimal. Single
// letters (K, M, G) are refused as ambiguous.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

// errNegative is returned by ParseSize for a negative size.
var errNegative = errors.New("negative size")

// ParseSize parses a size in bytes: a plain integer or an integer followed by
// B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000),
// with an optional space between, as in "512MiB", "1 GiB" or "1536". It
// accepts everything FormatSize prints.
func ParseSize(s string) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSuffix(rest, " "), u.mult
			break
		}
	}
	if num == "" || num[0] == '+' {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil:
		return 0, err
	case n < 0:
		return 0, errNegative
	case n > math.MaxInt64/mult:
		return 0, strconv.ErrRange
	}
	return n * mult, nil
}

// FormatSize formats n bytes in the largest binary unit that holds it
// exactly: 512MiB, 1GiB, and 1536B for 1536.
func FormatSize(n int64) string {
	for _, u := range sizeUnits[:4] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
