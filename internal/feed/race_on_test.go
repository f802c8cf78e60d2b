//go:build race

package feed

// raceEnabled makes the longer tests smaller under the race detector.
const raceEnabled = true
