package zeroth

import "math"

// The perturbations are produced by a counter-based generator: element j of the direction of parameter
// key under seed s is a pure function of (s, key, j). It is SplitMix64 (Steele, Lea, Flood, "Fast
// splittable pseudorandom number generators", OOPSLA 2014) started at state mix(s ^ key·C) and read at
// positions 2j+1 and 2j+2, i.e. a splittable stream per (seed, parameter) indexed by element. Because no
// state is carried from one element to the next, the direction is never stored (MeZO's "seed trick":
// princeton-nlp/MeZO trainer.py resets torch.manual_seed(zo_random_seed) before each of
// zo_perturb_parameters and zo_update and regenerates z), it is regenerated bit for bit in any order, a
// parameter's direction does not depend on which other parameters are present or in which order they
// are passed, and several directions can be regenerated for one element in a single fused pass.

const (
	golden  = 0x9e3779b97f4a7c15
	keyMul  = 0xd1b54a32d192ed03
	maskTag = 0x6a09e667f3bcc909
)

// mix64 is the SplitMix64 output function (Stafford's variant 13).
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// streamBase is the start state of the stream of parameter key under seed.
func streamBase(seed, key uint64) uint64 { return mix64(seed ^ (key * keyMul)) }

// unit53 maps h to a uniform number in [0, 1) with 53 random bits.
func unit53(h uint64) float64 { return float64(h>>11) * (1.0 / (1 << 53)) }

// Dist is the distribution of the perturbation direction z.
type Dist int

const (
	// Gaussian draws z ~ N(0, I), as MeZO does (torch.normal in zo_perturb_parameters).
	Gaussian Dist = iota
	// Rademacher draws z_i = ±1 with equal probability, as Spall's SPSA does.
	Rademacher
)

func (d Dist) String() string {
	switch d {
	case Gaussian:
		return "gaussian"
	case Rademacher:
		return "rademacher"
	}
	return "unknown"
}

// zAt returns element j of the direction in the stream starting at base.
func zAt(base uint64, j int, dist Dist) float64 {
	c := base + uint64(2*j+1)*golden
	h1 := mix64(c)
	if dist == Rademacher {
		if h1>>63 == 0 {
			return 1
		}
		return -1
	}
	h2 := mix64(c + golden)
	// Box–Muller: u1 in (0, 1], u2 in [0, 1).
	u1 := float64((h1>>11)+1) * (1.0 / (1 << 53))
	u2 := unit53(h2)
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// keep reports whether element j survives the sparse mask with stream base mb and drop fraction sparsity.
func keep(mb uint64, j int, sparsity float64) bool {
	if sparsity <= 0 {
		return true
	}
	return unit53(mix64(mb+uint64(j+1)*golden)) >= sparsity
}

// NameKey is the 64-bit key of a parameter name (FNV-1a) that, with the step seed and the element index,
// determines the parameter's perturbation.
func NameKey(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h
}

// FillDirection writes into dst the perturbation z of the parameter called name under the direction
// seed seed (see Estimator.DirectionSeed), without the sparse mask: the same numbers the estimators add
// to the weights (MeZO's seed trick; see the generator note in rng.go).
func FillDirection(dst []float64, seed uint64, name string, dist Dist) {
	base := streamBase(seed, NameKey(name))
	for j := range dst {
		dst[j] = zAt(base, j, dist)
	}
}

// rng is a small sequential SplitMix64 generator for the population methods (CBO, ES, ZO-RankSGD).
type rng struct{ s uint64 }

func newRNG(seed uint64) *rng { return &rng{s: mix64(seed ^ 0x5851f42d4c957f2d)} }

func (r *rng) next() uint64 { r.s += golden; return mix64(r.s) }

func (r *rng) float() float64 { return unit53(r.next()) }

func (r *rng) norm() float64 {
	u1 := float64((r.next()>>11)+1) * (1.0 / (1 << 53))
	u2 := r.float()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
