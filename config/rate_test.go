package config

import "testing"

// TestParseRate: tc's units, decimal; what FormatRate prints reads back;
// a rate without a unit or with a size unit is refused.
func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"100Mbit": 100e6, "1 Gbit": 1e9, "64Kbit": 64e3, "1500bit": 1500, "0bit": 0} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
		if err == nil && got > 0 {
			if back, _ := ParseRate(FormatRate(got)); back != got {
				t.Errorf("FormatRate(%d) = %q reads back as %d", got, FormatRate(got), back)
			}
		}
	}
	for _, in := range []string{"fast", "100", "100MiB", "Mbit", "-5Mbit", "+5Mbit", "1.5Mbit", "99999999999Gbit"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %d, want an error", in, got)
		}
	}
}
