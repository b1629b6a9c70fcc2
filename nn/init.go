package nn

import (
	"math"
	"math/rand"

	"gorgonia.org/tensor"
)

// Init draws a tensor of the given dtype (float32 or float64) and shape from rng. Every initialiser in this
// package is deterministic given the state of rng: Gorgonia's own initialisers (G.GlorotN, G.Uniform...)
// seed from the clock, so gradlab never uses them. Pass the result to gorgonia.WithValue, or let a Builder
// do it.
//
// Initialisers that depend on fan-in and fan-out take them from Fans, which follows gradlab's (in, out)
// weight layout.
type Init func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense

// Gains for Xavier and Kaiming initialisation, as in PyTorch's torch.nn.init.calculate_gain.
const (
	GainLinear = 1.0
	GainTanh   = 5.0 / 3
	GainReLU   = math.Sqrt2
)

// Fans returns the fan-in and fan-out of a weight of the given shape in gradlab's layout. A matrix is stored
// (in, out) — Gorgonia's layout for y = x·W, the transpose of PyTorch's (out, in) — so fanIn = shape[0] and
// fanOut = shape[1]. For more than two dimensions the last two are (in, out) and the leading ones index
// independent matrices (a batch of experts or heads), which do not change the fans. A vector has
// fanIn = fanOut = its length; a scalar has 1 and 1.
func Fans(shape ...int) (fanIn, fanOut int) {
	switch len(shape) {
	case 0:
		return 1, 1
	case 1:
		return shape[0], shape[0]
	}
	return shape[len(shape)-2], shape[len(shape)-1]
}

// fill allocates a tensor and fills it with draw(), converted to the dtype.
func fill(rng *rand.Rand, dt tensor.Dtype, shape []int, draw func(*rand.Rand) float64) *tensor.Dense {
	n := tensor.Shape(shape).TotalSize()
	switch dt {
	case tensor.Float64:
		d := make([]float64, n)
		for i := range d {
			d[i] = draw(rng)
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
	case tensor.Float32:
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(draw(rng))
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(d))
	}
	panic("nn: initialiser dtype must be float32 or float64, got " + dt.String())
}

// Constant fills the tensor with v (rng is not used and may be nil).
func Constant(v float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		return fill(rng, dt, shape, func(*rand.Rand) float64 { return v })
	}
}

// Zeros fills the tensor with 0 (biases; the output projections of zero-initialised residual branches).
func Zeros() Init { return Constant(0) }

// Ones fills the tensor with 1 (the gains γ of RMSNorm).
func Ones() Init { return Constant(1) }

// Normal draws N(mean, std²) entries.
func Normal(mean, std float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		return fill(rng, dt, shape, func(r *rand.Rand) float64 { return mean + std*r.NormFloat64() })
	}
}

// Uniform draws U(lo, hi) entries.
func Uniform(lo, hi float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		return fill(rng, dt, shape, func(r *rand.Rand) float64 { return lo + (hi-lo)*r.Float64() })
	}
}

// XavierUniform is Glorot & Bengio's initialisation ("Understanding the difficulty of training deep
// feedforward neural networks", 2010): U(−a, a) with a = gain·√(6/(fanIn+fanOut)), fans from Fans.
func XavierUniform(gain float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		in, out := Fans(shape...)
		a := gain * math.Sqrt(6/float64(in+out))
		return Uniform(-a, a)(rng, dt, shape...)
	}
}

// XavierNormal is Glorot & Bengio's initialisation ("Understanding the difficulty of training deep
// feedforward neural networks", 2010) with normal entries: N(0, σ²), σ = gain·√(2/(fanIn+fanOut)).
func XavierNormal(gain float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		in, out := Fans(shape...)
		return Normal(0, gain*math.Sqrt(2/float64(in+out)))(rng, dt, shape...)
	}
}

// KaimingUniform is He et al.'s initialisation ("Delving Deep into Rectifiers: Surpassing Human-Level
// Performance on ImageNet Classification", 2015) in fan-in mode: U(−b, b) with b = gain·√(3/fanIn). With
// gain = GainReLU it is PyTorch's kaiming_uniform_ default; with gain = 1/√3 it is the U(±1/√fanIn) that
// PyTorch's nn.Linear uses.
func KaimingUniform(gain float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		in, _ := Fans(shape...)
		b := gain * math.Sqrt(3/float64(in))
		return Uniform(-b, b)(rng, dt, shape...)
	}
}

// KaimingNormal is He et al.'s initialisation ("Delving Deep into Rectifiers: Surpassing Human-Level
// Performance on ImageNet Classification", 2015) in fan-in mode: N(0, σ²), σ = gain/√fanIn.
func KaimingNormal(gain float64) Init {
	return func(rng *rand.Rand, dt tensor.Dtype, shape ...int) *tensor.Dense {
		in, _ := Fans(shape...)
		return Normal(0, gain/math.Sqrt(float64(in)))(rng, dt, shape...)
	}
}
