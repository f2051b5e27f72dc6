package jail

import "golang.org/x/sys/unix"

// SSH terminal mode opcodes (RFC 4254 section 8) and the termios fields they
// set. Opcodes the kernel has no equivalent for are ignored, as sshd does.
var (
	ccModes = map[uint8]int{
		1: unix.VINTR, 2: unix.VQUIT, 3: unix.VERASE, 4: unix.VKILL, 5: unix.VEOF,
		6: unix.VEOL, 7: unix.VEOL2, 8: unix.VSTART, 9: unix.VSTOP, 10: unix.VSUSP,
		12: unix.VREPRINT, 13: unix.VWERASE, 14: unix.VLNEXT, 18: unix.VDISCARD,
	}
	iflagModes = map[uint8]uint32{
		30: unix.IGNPAR, 31: unix.PARMRK, 32: unix.INPCK, 33: unix.ISTRIP, 34: unix.INLCR,
		35: unix.IGNCR, 36: unix.ICRNL, 37: unix.IUCLC, 38: unix.IXON, 39: unix.IXANY,
		40: unix.IXOFF, 41: unix.IMAXBEL, 42: unix.IUTF8,
	}
	lflagModes = map[uint8]uint32{
		50: unix.ISIG, 51: unix.ICANON, 52: unix.XCASE, 53: unix.ECHO, 54: unix.ECHOE,
		55: unix.ECHOK, 56: unix.ECHONL, 57: unix.NOFLSH, 58: unix.TOSTOP, 59: unix.IEXTEN,
		60: unix.ECHOCTL, 61: unix.ECHOKE, 62: unix.PENDIN,
	}
	oflagModes = map[uint8]uint32{
		70: unix.OPOST, 71: unix.OLCUC, 72: unix.ONLCR, 73: unix.OCRNL, 74: unix.ONOCR, 75: unix.ONLRET,
	}
	cflagModes = map[uint8]uint32{90: unix.CS7, 91: unix.CS8, 92: unix.PARENB, 93: unix.PARODD}
)

// setFlag sets or clears bit in *field.
func setFlag(field *uint32, bit uint32, on bool) {
	if on {
		*field |= bit
	} else {
		*field &^= bit
	}
}

// applyModes applies SSH terminal modes and a window size to the terminal fd.
func applyModes(fd int, modes map[uint8]uint32, rows, cols uint16) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	for op, v := range modes {
		if i, ok := ccModes[op]; ok {
			t.Cc[i] = uint8(v)
		} else if b, ok := iflagModes[op]; ok {
			setFlag(&t.Iflag, b, v != 0)
		} else if b, ok := lflagModes[op]; ok {
			setFlag(&t.Lflag, b, v != 0)
		} else if b, ok := oflagModes[op]; ok {
			setFlag(&t.Oflag, b, v != 0)
		} else if b, ok := cflagModes[op]; ok {
			if op == 90 || op == 91 {
				if v != 0 {
					t.Cflag = t.Cflag&^unix.CSIZE | b
				}
			} else {
				setFlag(&t.Cflag, b, v != 0)
			}
		}
	}
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return err
	}
	return setWinsize(fd, rows, cols)
}
