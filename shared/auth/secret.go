package auth

import (
	"fmt"
	"math"
)

// minSecretBits is the least a secret may score on secretPattern's
// estimate: under what a random 32-character hex secret scores (over 90
// bits in two million draws; base64 and longer secrets score far more),
// far over what patterns score (32 times "a" 0, "abab..." 32, digits
// counting up under 25).
const minSecretBits = 80

// secretPattern says why secret looks like a pattern rather than random
// bytes, or "" when it does not. It flags obviously low entropy, not weak
// randomness, with two checks a random secret passes except with
// negligible odds:
//   - it repeats itself: for some shift p up to half its length, at least
//     3/4 of its bytes equal the byte p before ("aaaa...", "abab...",
//     "passwordpassword...");
//   - its length times the Shannon entropy of its byte frequencies, or of
//     the differences between neighbouring bytes (which exposes counting
//     runs such as "0123456789abcdef..."), whichever is lower, is under
//     minSecretBits.
//
// The reason never contains the secret.
func secretPattern(secret []byte) string {
	n := len(secret)
	if n < 2 {
		return ""
	}
	for p := 1; p <= n/2; p++ {
		same := 0
		for i := p; i < n; i++ {
			if secret[i] == secret[i-p] {
				same++
			}
		}
		if 4*same >= 3*(n-p) {
			return fmt.Sprintf("it repeats itself every %d bytes", p)
		}
	}
	var values [256]int
	var steps [511]int // secret[i] - secret[i-1] + 255
	for i, b := range secret {
		values[b]++
		if i > 0 {
			steps[int(b)-int(secret[i-1])+255]++
		}
	}
	bits := min(frequencyBits(values[:], n), frequencyBits(steps[:], n-1))
	if bits < minSecretBits {
		return fmt.Sprintf("its bytes carry about %.0f bits by a frequency estimate, under the %d a random secret of this length far exceeds", bits, minSecretBits)
	}
	return ""
}

// frequencyBits is n times the Shannon entropy of the symbol counts, which
// sum to n.
func frequencyBits(counts []int, n int) float64 {
	var bits float64
	for _, c := range counts {
		if c > 0 {
			bits += float64(c) * math.Log2(float64(n)/float64(c))
		}
	}
	return bits
}
