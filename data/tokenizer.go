package data

import (
	"slices"

	"github.com/pkg/errors"
)

// Tokenizer turns text into token ids in [0, VocabSize()) and back.
type Tokenizer interface {
	// VocabSize is the number of distinct token ids.
	VocabSize() int
	// Encode appends the tokens of text to dst and returns the extended slice.
	Encode(dst []int, text []byte) []int
	// Decode appends the text of tokens to dst and returns it; an id outside the vocabulary is an error.
	Decode(dst []byte, tokens []int) ([]byte, error)
}

// ByteVocabSize is the vocabulary size of [ByteTokenizer]: one token per byte value.
const ByteVocabSize = 256

// ByteTokenizer is the byte-level tokenizer: token i is the byte i. Any byte sequence, valid UTF-8 or
// not, round-trips exactly through Encode and Decode. Its zero value is ready to use.
type ByteTokenizer struct{}

var _ Tokenizer = ByteTokenizer{}

// VocabSize returns 256.
func (ByteTokenizer) VocabSize() int { return ByteVocabSize }

// Encode appends one token per byte of text to dst (which may be nil) and returns the extended slice.
func (ByteTokenizer) Encode(dst []int, text []byte) []int {
	dst = slices.Grow(dst, len(text))
	for _, b := range text {
		dst = append(dst, int(b))
	}
	return dst
}

// Decode appends the byte of each token to dst (which may be nil) and returns the extended slice. A
// token outside [0, 256) is an error, and dst is then returned unchanged.
func (ByteTokenizer) Decode(dst []byte, tokens []int) ([]byte, error) {
	for i, t := range tokens {
		if t < 0 || t >= ByteVocabSize {
			return dst, errors.Errorf("data: token %d at position %d is outside the byte vocabulary [0, 256)", t, i)
		}
	}
	dst = slices.Grow(dst, len(tokens))
	for _, t := range tokens {
		dst = append(dst, byte(t))
	}
	return dst, nil
}
