//go:build cgo

package jail

// cgoLinked says the binary links cgo (a plain `go build` on a host with a
// C compiler). Then allThreads works through libcap's psx, which finds the
// threads in /proc/self/task, so it can only run once the init's own /proc
// is mounted (see dropBoundingSet).
const cgoLinked = true
