//go:build race

package cache_test

// raceEnabled makes measuring tests smaller under the race detector.
const raceEnabled = true
