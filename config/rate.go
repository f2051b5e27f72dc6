package config

import (
	"math"
	"strconv"
	"strings"
)

// rateUnits are the suffixes ParseRate accepts: bits per second in powers
// of 1000, as tc(8) spells them.
var rateUnits = []struct {
	suffix string
	mult   int64
}{{"Gbit", 1e9}, {"Mbit", 1e6}, {"Kbit", 1e3}, {"bit", 1}}

// ParseRate parses a network rate in bits per second: an integer followed
// by Kbit, Mbit or Gbit (powers of 1000) or bit, with an optional space
// between, as in "100Mbit" or "1 Gbit". It accepts what FormatRate prints.
func ParseRate(s string) (int64, error) {
	num := strings.TrimSpace(s)
	for _, u := range rateUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(rest, " "), 10, 64)
			switch {
			case err != nil || rest == "" || rest[0] == '+':
				return 0, strconv.ErrSyntax
			case n < 0:
				return 0, errNegative
			case n > math.MaxInt64/u.mult:
				return 0, strconv.ErrRange
			}
			return n * u.mult, nil
		}
	}
	return 0, strconv.ErrSyntax
}

// FormatRate formats bits per second in the largest unit that holds it
// exactly: 100Mbit, 1Gbit, 1500bit.
func FormatRate(n int64) string {
	for _, u := range rateUnits {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "bit"
}
