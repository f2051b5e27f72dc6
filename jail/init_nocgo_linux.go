//go:build !cgo

package jail

// cgoLinked says the binary links cgo; see init_cgo_linux.go.
const cgoLinked = false
