package data

import (
	"cmp"
	"math"
	"slices"

	"github.com/pkg/errors"
)

// Ln2 converts nats to bits: bits = nats / Ln2.
const Ln2 = math.Ln2

// tokenCount is how often one token value occurs.
type tokenCount struct{ v, n int64 }

// counts returns the occurrences of each token value, sorted by value so that sums over them are
// reproducible to the last bit.
func counts[T Token](tokens []T) []tokenCount {
	var out []tokenCount
	if b, ok := any(tokens).([]byte); ok {
		var c [256]int64
		for _, x := range b {
			c[x]++
		}
		for v, n := range c {
			if n > 0 {
				out = append(out, tokenCount{int64(v), n})
			}
		}
		return out
	}
	m := make(map[int64]int64)
	for _, x := range tokens {
		m[int64(x)]++
	}
	for v, n := range m {
		out = append(out, tokenCount{v, n})
	}
	slices.SortFunc(out, func(a, b tokenCount) int { return cmp.Compare(a.v, b.v) })
	return out
}

// UnigramEntropy returns the entropy, in nats per token, of the token frequencies of tokens:
// −Σ p(v) ln p(v). It is the cross-entropy loss of the best model that ignores context, measured on the
// stream itself; divide by [Ln2] for bits per token (per byte with [ByteTokenizer]). An empty stream
// has entropy 0.
func UnigramEntropy[T Token](tokens []T) float64 {
	n := float64(len(tokens))
	var h float64
	for _, c := range counts(tokens) {
		p := float64(c.n) / n
		h -= p * math.Log(p)
	}
	return h
}

// UnigramEntropyBits is [UnigramEntropy] in bits per token.
func UnigramEntropyBits[T Token](tokens []T) float64 { return UnigramEntropy(tokens) / Ln2 }

// UnigramCrossEntropy returns, in nats per token, the cross-entropy on eval of the unigram model fitted
// to train with additive smoothing alpha over a vocabulary of vocab ids: p(v) = (count(v)+alpha) /
// (len(train)+alpha·vocab). It is the validation loss a context-free model achieves — the baseline a
// language model's validation loss should fall well below. A token outside [0, vocab) is an error, and
// so is a zero probability (alpha = 0 and an eval token unseen in train).
func UnigramCrossEntropy[T Token](train, eval []T, vocab int, alpha float64) (float64, error) {
	if vocab < 1 || alpha < 0 {
		return 0, errors.Errorf("data: vocabulary %d must be positive and smoothing %g non-negative", vocab, alpha)
	}
	if len(eval) == 0 {
		return 0, errors.New("data: empty evaluation stream")
	}
	ct := make(map[int64]int64)
	for _, c := range counts(train) {
		if c.v < 0 || c.v >= int64(vocab) {
			return 0, errors.Errorf("data: training token %d is outside the vocabulary [0, %d)", c.v, vocab)
		}
		ct[c.v] = c.n
	}
	denom := float64(len(train)) + alpha*float64(vocab)
	var h float64
	for _, c := range counts(eval) {
		v := c.v
		if v < 0 || v >= int64(vocab) {
			return 0, errors.Errorf("data: evaluation token %d is outside the vocabulary [0, %d)", v, vocab)
		}
		p := (float64(ct[v]) + alpha) / denom
		if p == 0 {
			return 0, errors.Errorf("data: token %d never occurs in training and smoothing is 0", v)
		}
		h -= float64(c.n) * math.Log(p)
	}
	return h / float64(len(eval)), nil
}
