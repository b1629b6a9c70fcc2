package data

import (
	"math/rand"

	"github.com/pkg/errors"
)

// Token is the element type of a token stream: bytes for [ByteTokenizer], wider integers for larger
// vocabularies.
type Token interface {
	~uint8 | ~uint16 | ~uint32 | ~int32 | ~int | ~int64
}

// Batch is a batch of Rows windows of a token stream: row r of Inputs is tokens[s : s+Context] and row r
// of Targets is tokens[s+1 : s+Context+1] — the next token at every position — with s = Starts[r].
// Inputs and Targets are row-major B×Context. Samplers reuse one Batch: copy what must outlive the next
// call to Next.
type Batch struct {
	// B is the number of rows and Context the window length.
	B, Context int
	// Rows is the number of rows that hold windows: B, except for the last batch of a [Sequential]
	// pass, whose remaining rows are zero.
	Rows int
	// Inputs and Targets hold B·Context token ids each.
	Inputs, Targets []int
	// Starts holds each row's start offset in the token stream (-1 for unused rows).
	Starts []int
}

func newBatch(b, context int) *Batch {
	return &Batch{
		B: b, Context: context, Rows: b,
		Inputs:  make([]int, b*context),
		Targets: make([]int, b*context),
		Starts:  make([]int, b),
	}
}

// fill writes the window starting at s into row r.
func fill[T Token](bt *Batch, tokens []T, r, s int) {
	c := bt.Context
	in, tg := bt.Inputs[r*c:(r+1)*c], bt.Targets[r*c:(r+1)*c]
	w := tokens[s : s+c+1]
	for i := 0; i < c; i++ {
		in[i] = int(w[i])
		tg[i] = int(w[i+1])
	}
	bt.Starts[r] = s
}

func checkShape(n, batch, context int) error {
	if batch < 1 || context < 1 {
		return errors.Errorf("data: batch size %d and context %d must be positive", batch, context)
	}
	if n < context+1 {
		return errors.Errorf("data: %d tokens are too few for a window of context %d + 1", n, context)
	}
	return nil
}

// Sampler draws training batches of random contiguous windows from a token stream: each row starts at
// a position drawn uniformly from [0, len(tokens)−context−1] by a math/rand generator seeded with the
// given seed, so the sequence of batches is a function of the seed alone. Next allocates nothing.
type Sampler[T Token] struct {
	tokens  []T
	seed    int64
	rng     *rand.Rand
	batch   *Batch
	batches int64
}

// NewSampler returns a sampler of batches of batch windows of context+1 tokens from tokens, seeded
// with seed. The tokens are not copied.
func NewSampler[T Token](tokens []T, batch, context int, seed int64) (*Sampler[T], error) {
	if err := checkShape(len(tokens), batch, context); err != nil {
		return nil, err
	}
	return &Sampler[T]{
		tokens: tokens, seed: seed, rng: rand.New(rand.NewSource(seed)),
		batch: newBatch(batch, context),
	}, nil
}

// Next fills the sampler's batch with fresh random windows and returns it.
func (s *Sampler[T]) Next() *Batch {
	b := s.batch
	span := len(s.tokens) - b.Context
	for r := 0; r < b.B; r++ {
		fill(b, s.tokens, r, s.rng.Intn(span))
	}
	s.batches++
	return b
}

// Skip advances the sampler by n batches without filling them, so that a run resumed after n batches
// sees the batches an uninterrupted run would.
func (s *Sampler[T]) Skip(n int64) {
	span := len(s.tokens) - s.batch.Context
	for i := int64(0); i < n; i++ {
		for r := 0; r < s.batch.B; r++ {
			s.rng.Intn(span)
		}
	}
	s.batches += n
}

// Reset returns the sampler to its state just after construction: the same batches again.
func (s *Sampler[T]) Reset() {
	s.rng.Seed(s.seed)
	s.batches = 0
}

// Seed returns the sampler's seed.
func (s *Sampler[T]) Seed() int64 { return s.seed }

// Batches returns the number of batches drawn (or skipped) since construction or Reset.
func (s *Sampler[T]) Batches() int64 { return s.batches }

// Sequential walks a token stream in non-overlapping windows for evaluation: window w starts at
// w·context, so every token but the first is a target exactly once, up to the last whole window.
// Next allocates nothing.
type Sequential[T Token] struct {
	tokens []T
	batch  *Batch
	next   int
}

// NewSequential returns a sequential pass over tokens in batches of batch windows of context+1
// tokens. To evaluate on part of a split, pass a prefix of its tokens.
func NewSequential[T Token](tokens []T, batch, context int) (*Sequential[T], error) {
	if err := checkShape(len(tokens), batch, context); err != nil {
		return nil, err
	}
	return &Sequential[T]{tokens: tokens, batch: newBatch(batch, context)}, nil
}

// Windows returns the number of windows in a pass: ⌊(len(tokens)−1)/context⌋.
func (s *Sequential[T]) Windows() int { return (len(s.tokens) - 1) / s.batch.Context }

// Next fills the batch with the next windows and returns it, or returns false when the pass is over.
// The last batch may be partial: Batch.Rows says how many rows hold windows; the others are zero.
func (s *Sequential[T]) Next() (*Batch, bool) {
	b, w := s.batch, s.Windows()
	if s.next >= w {
		return nil, false
	}
	b.Rows = 0
	for r := 0; r < b.B; r++ {
		if s.next < w {
			fill(b, s.tokens, r, s.next*b.Context)
			s.next++
			b.Rows++
			continue
		}
		c := b.Context
		clear(b.Inputs[r*c : (r+1)*c])
		clear(b.Targets[r*c : (r+1)*c])
		b.Starts[r] = -1
	}
	return b, true
}

// Reset starts the pass again from the first window.
func (s *Sequential[T]) Reset() { s.next = 0 }
