package nn

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Linear is an affine layer y = x·W (+ b) (Rosenblatt's perceptron layer; PyTorch's nn.Linear). W is stored
// (in, out) — Gorgonia's layout, the transpose of PyTorch's (out, in) weight — so loading a PyTorch
// checkpoint needs Wᵀ. Its parameters are named "<name>.weight" and "<name>.bias".
type Linear struct {
	// W is the (in, out) weight; B the (out) bias, nil without one.
	W, B    *G.Node
	in, out int
}

// NewLinear creates a Linear layer of in inputs and out outputs. Options: WithInit (default
// KaimingUniform(1/√3), i.e. U(±1/√in), PyTorch's nn.Linear default), WithBias (default false: decoders
// use none), WithBiasInit (default U(±1/√in), as PyTorch).
func NewLinear(b *Builder, name string, in, out int, opts ...Option) (*Linear, error) {
	if in <= 0 || out <= 0 {
		return nil, errors.Errorf("nn.Linear %q: bad size %d×%d", name, in, out)
	}
	bound := 1 / math.Sqrt(float64(in))
	o := collect(opts, options{init: KaimingUniform(1 / math.Sqrt(3)), biasInit: Uniform(-bound, bound)})
	w, err := b.Param(name+".weight", o.init, in, out)
	if err != nil {
		return nil, err
	}
	l := &Linear{W: w, in: in, out: out}
	if o.bias {
		if l.B, err = b.Param(name+".bias", o.biasInit, out); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// In returns the input width.
func (l *Linear) In() int { return l.in }

// Out returns the output width.
func (l *Linear) Out() int { return l.out }

// Params returns W and, if present, b.
func (l *Linear) Params() G.Nodes {
	if l.B == nil {
		return G.Nodes{l.W}
	}
	return G.Nodes{l.W, l.B}
}

// Forward computes x·W (+ b) for x of shape (..., in); the result has shape (..., out). Leading axes are
// folded into one matrix product.
func (l *Linear) Forward(x *G.Node) (*G.Node, error) {
	if x == nil || x.Dims() < 1 || x.Shape()[x.Dims()-1] != l.in {
		return nil, errors.Errorf("nn.Linear %s: want x (..., %d), got %v", l.W.Name(), l.in, shapeOf(x))
	}
	shape := x.Shape().Clone()
	rows := shape.TotalSize() / l.in
	var err error
	x2 := x
	if x.Dims() != 2 {
		if x2, err = G.Reshape(x, tensor.Shape{rows, l.in}); err != nil {
			return nil, err
		}
	}
	y, err := G.Mul(x2, l.W)
	if err != nil {
		return nil, err
	}
	if l.B != nil {
		b2, err := G.Reshape(l.B, tensor.Shape{1, l.out})
		if err != nil {
			return nil, err
		}
		if y, err = G.BroadcastAdd(y, b2, nil, []byte{0}); err != nil {
			return nil, err
		}
	}
	if x.Dims() != 2 {
		shape[len(shape)-1] = l.out
		return G.Reshape(y, shape)
	}
	return y, nil
}

func shapeOf(n *G.Node) tensor.Shape {
	if n == nil {
		return nil
	}
	return n.Shape()
}

// Embedding maps token ids to rows of a (vocab, d) table (Bengio et al., "A Neural Probabilistic Language
// Model", 2003), gathered with Gorgonia's ByIndices on axis 0, whose scatter-add gradient handles repeated
// ids. The table is named "<name>.weight".
type Embedding struct {
	// E is the (vocab, d) table.
	E        *G.Node
	vocab, d int
}

// NewEmbedding creates a (vocab, d) embedding. Option: WithInit (default Normal(0, 1), PyTorch's
// nn.Embedding; GPT-style models use Normal(0, 0.02)).
func NewEmbedding(b *Builder, name string, vocab, d int, opts ...Option) (*Embedding, error) {
	if vocab <= 0 || d <= 0 {
		return nil, errors.Errorf("nn.Embedding %q: bad size %d×%d", name, vocab, d)
	}
	o := collect(opts, options{init: Normal(0, 1)})
	e, err := b.Param(name+".weight", o.init, vocab, d)
	if err != nil {
		return nil, err
	}
	return &Embedding{E: e, vocab: vocab, d: d}, nil
}

// Vocab returns the number of rows.
func (e *Embedding) Vocab() int { return e.vocab }

// Dim returns the embedding width d.
func (e *Embedding) Dim() int { return e.d }

// Params returns the table.
func (e *Embedding) Params() G.Nodes { return G.Nodes{e.E} }

// Forward gathers the rows of ids (an Int vector node of length n, e.g. a batch of sequences flattened)
// into an (n, d) node. Ids outside [0, vocab) are an error at run time.
func (e *Embedding) Forward(ids *G.Node) (*G.Node, error) {
	if ids == nil || ids.Dtype() != tensor.Int || ids.Dims() != 1 {
		return nil, errors.Errorf("nn.Embedding %s: ids must be an Int vector node", e.E.Name())
	}
	return G.ByIndices(e.E, ids, 0)
}

// Attend returns the logits x·Eᵀ of x (..., d) against every row of the table, shape (..., vocab): the
// output head of a model with tied input and output embeddings (Press & Wolf, "Using the Output Embedding
// to Improve Language Models", 2017).
func (e *Embedding) Attend(x *G.Node) (*G.Node, error) {
	if x == nil || x.Dims() < 1 || x.Shape()[x.Dims()-1] != e.d {
		return nil, errors.Errorf("nn.Embedding %s: want x (..., %d), got %v", e.E.Name(), e.d, shapeOf(x))
	}
	shape := x.Shape().Clone()
	x2 := x
	var err error
	if x.Dims() != 2 {
		if x2, err = G.Reshape(x, tensor.Shape{shape.TotalSize() / e.d, e.d}); err != nil {
			return nil, err
		}
	}
	et, err := G.Transpose(e.E)
	if err != nil {
		return nil, err
	}
	y, err := G.Mul(x2, et)
	if err != nil || x.Dims() == 2 {
		return y, err
	}
	shape[len(shape)-1] = e.vocab
	return G.Reshape(y, shape)
}

// RMSNorm is a root mean square layer normalisation layer (Zhang & Sennrich, "Root Mean Square Layer
// Normalization", NeurIPS 2019) with a learned gain γ named "<name>.weight"; see ApplyRMSNorm.
type RMSNorm struct {
	// Gamma is the (d) gain.
	Gamma *G.Node
	// Eps is ε.
	Eps float64
}

// NewRMSNorm creates an RMSNorm over d features. Options: WithInit (default Ones), WithEps (default
// DefaultEps = 1e-6).
func NewRMSNorm(b *Builder, name string, d int, opts ...Option) (*RMSNorm, error) {
	if d <= 0 {
		return nil, errors.Errorf("nn.RMSNorm %q: bad size %d", name, d)
	}
	o := collect(opts, options{init: Ones(), eps: DefaultEps})
	if !(o.eps >= 0) || math.IsInf(o.eps, 0) {
		return nil, errors.Errorf("nn.RMSNorm %q: bad eps %v", name, o.eps)
	}
	g, err := b.Param(name+".weight", o.init, d)
	if err != nil {
		return nil, err
	}
	return &RMSNorm{Gamma: g, Eps: o.eps}, nil
}

// Params returns γ.
func (n *RMSNorm) Params() G.Nodes { return G.Nodes{n.Gamma} }

// Forward normalises x (..., d) over its last axis.
func (n *RMSNorm) Forward(x *G.Node) (*G.Node, error) { return ApplyRMSNorm(x, n.Gamma, n.Eps) }

// DefaultHidden returns SwiGLU's default hidden width for model width d: 8d/3 (which keeps the parameter
// count of a 4d two-matrix MLP, Shazeer, "GLU Variants Improve Transformer", 2020), truncated to an integer
// and rounded up to a multiple of multipleOf, as in Meta's LLaMA code. DefaultHidden(128, 64) = 384,
// DefaultHidden(4096, 256) = 11008.
func DefaultHidden(d, multipleOf int) int {
	if multipleOf <= 0 {
		multipleOf = 1
	}
	h := 8 * d / 3
	return multipleOf * ((h + multipleOf - 1) / multipleOf)
}

// SwiGLU is the gated feed-forward block of Shazeer, "GLU Variants Improve Transformer" (2020), as used in
// LLaMA and DeepSeek:
//
//	FFN(x) = (SiLU(x·W1) ⊙ x·W3)·W2
//
// with W1, W3 of shape (d, d_ff) and W2 of shape (d_ff, d), no biases, named "<name>.w1.weight",
// "<name>.w2.weight", "<name>.w3.weight" (LLaMA's names).
type SwiGLU struct {
	W1, W2, W3 *Linear
}

// NewSwiGLU creates a SwiGLU block of width d. Options: WithHidden (default DefaultHidden(d, multiple)),
// WithMultipleOf (default 64), WithInit (the initialiser of all three matrices; default Linear's).
func NewSwiGLU(b *Builder, name string, d int, opts ...Option) (*SwiGLU, error) {
	o := collect(opts, options{multipleOf: 64})
	h := o.hidden
	if h == 0 {
		h = DefaultHidden(d, o.multipleOf)
	}
	if d <= 0 || h <= 0 {
		return nil, errors.Errorf("nn.SwiGLU %q: bad size d=%d d_ff=%d", name, d, h)
	}
	var lo []Option
	if o.init != nil {
		lo = append(lo, WithInit(o.init))
	}
	w1, err := NewLinear(b, name+".w1", d, h, lo...)
	if err != nil {
		return nil, err
	}
	w2, err := NewLinear(b, name+".w2", h, d, lo...)
	if err != nil {
		return nil, err
	}
	w3, err := NewLinear(b, name+".w3", d, h, lo...)
	if err != nil {
		return nil, err
	}
	return &SwiGLU{W1: w1, W2: w2, W3: w3}, nil
}

// Hidden returns d_ff.
func (f *SwiGLU) Hidden() int { return f.W1.Out() }

// Params returns W1, W2, W3.
func (f *SwiGLU) Params() G.Nodes { return G.Nodes{f.W1.W, f.W2.W, f.W3.W} }

// Forward computes FFN(x) for x (..., d).
func (f *SwiGLU) Forward(x *G.Node) (*G.Node, error) {
	a, err := f.W1.Forward(x)
	if err != nil {
		return nil, err
	}
	if a, err = SiLU(a); err != nil {
		return nil, err
	}
	c, err := f.W3.Forward(x)
	if err != nil {
		return nil, err
	}
	h, err := G.HadamardProd(a, c)
	if err != nil {
		return nil, err
	}
	return f.W2.Forward(h)
}
