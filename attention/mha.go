package attention

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/nn"
)

// MaskValue is the additive causal-mask entry for a masked (future) key: a large negative constant rather
// than −∞, representable in float32, whose exponential underflows to exactly 0 after the softmax's maximum is
// subtracted, so masked keys get probability 0 and gradient 0 in float32 and float64 alike.
const MaskValue = -1e9

// DefaultMaxPos is the default length of the RoPE table (the longest sequence a layer can see).
const DefaultMaxPos = 2048

// MHAConfig sizes a causal multi-head attention layer.
type MHAConfig struct {
	// Dim is the model width d (input and output features).
	Dim int
	// Heads is the number of query heads n_h.
	Heads int
	// KVHeads is the number of key/value heads n_g for grouped-query attention (Ainslie et al., "GQA:
	// Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints", 2023): query head h
	// uses key/value head h/(n_h/n_g), as Llama's repeat_kv. 0 means Heads (plain MHA); 1 is multi-query
	// attention. It must divide Heads.
	KVHeads int
	// HeadDim is d_h (even: RoPE rotates pairs). 0 means Dim/Heads.
	HeadDim int
	// MaxPos is the length of the RoPE table, the longest sequence (and cache) the layer accepts. 0 means
	// DefaultMaxPos.
	MaxPos int
	// RoPEBase is RoPE's θ; 0 means nn.DefaultRoPEBase (10000).
	RoPEBase float64
	// Pairing is RoPE's pairing; the zero value is nn.Interleaved (RoFormer's and DeepSeek's).
	Pairing nn.Pairing
	// Init initialises the four projection matrices; nil means nn.Linear's default U(±1/√in).
	Init nn.Init
}

func (c MHAConfig) withDefaults() (MHAConfig, error) {
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 && c.Heads > 0 {
		c.HeadDim = c.Dim / c.Heads
	}
	if c.MaxPos == 0 {
		c.MaxPos = DefaultMaxPos
	}
	switch {
	case c.Dim <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.HeadDim <= 0 || c.MaxPos <= 0:
		return c, errors.Errorf("attention: bad MHA config %+v", c)
	case c.Heads%c.KVHeads != 0:
		return c, errors.Errorf("attention: KVHeads %d does not divide Heads %d", c.KVHeads, c.Heads)
	case c.HeadDim%2 != 0:
		return c, errors.Errorf("attention: HeadDim %d must be even for RoPE", c.HeadDim)
	}
	return c, nil
}

// CacheValuesPerToken returns the number of values a KV cache holds per token for this layer: keys and
// values of every key/value head, 2·n_g·d_h (2·n_h·d_h without GQA).
func (c MHAConfig) CacheValuesPerToken() int {
	c, _ = c.withDefaults()
	return 2 * c.KVHeads * c.HeadDim
}

// MHA is causal multi-head self-attention (Vaswani et al., "Attention Is All You Need", 2017) with rotary
// position embeddings on queries and keys (Su et al., "RoFormer", 2021) and optional grouped-query attention:
//
//	Q, K, V = x·W_Q, x·W_K, x·W_V → heads;   Q, K ← RoPE(Q), RoPE(K)
//	S = Q·Kᵀ/√d_h + M   (M_ts = 0 for s ≤ t, MaskValue otherwise);   O = softmax_s(S)·V;   y = O·W_O
//
// Parameters (no biases), W stored (in, out): "<name>.wq.weight" (d, n_h·d_h), "<name>.wk.weight" and
// "<name>.wv.weight" (d, n_g·d_h), "<name>.wo.weight" (n_h·d_h, d); head h owns columns [h·d_h, (h+1)·d_h)
// (PyTorch's view(B, T, n_h, d_h)). With GQA the queries of one group are stacked along the sequence axis,
// (B·n_g, r·T, d_h) with r = n_h/n_g, against the group's keys (B·n_g, T, d_h), so no key is repeated and
// the mask is a tiled constant (REFERENCE §2.5).
type MHA struct {
	// Wq, Wk, Wv, Wo are the projections.
	Wq, Wk, Wv, Wo *nn.Linear
	cfg            MHAConfig
	name           string
	dt             tensor.Dtype
	rope           *nn.RoPE
}

// NewMHA creates the parameters of a causal multi-head attention layer under the prefix name.
func NewMHA(b *nn.Builder, name string, cfg MHAConfig) (*MHA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rope, err := nn.NewRoPE(cfg.HeadDim, cfg.MaxPos, cfg.RoPEBase, cfg.Pairing)
	if err != nil {
		return nil, err
	}
	var lo []nn.Option
	if cfg.Init != nil {
		lo = append(lo, nn.WithInit(cfg.Init))
	}
	m := &MHA{cfg: cfg, name: name, dt: b.Dtype(), rope: rope}
	d, q, kv := cfg.Dim, cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim
	if m.Wq, err = nn.NewLinear(b, name+".wq", d, q, lo...); err != nil {
		return nil, err
	}
	if m.Wk, err = nn.NewLinear(b, name+".wk", d, kv, lo...); err != nil {
		return nil, err
	}
	if m.Wv, err = nn.NewLinear(b, name+".wv", d, kv, lo...); err != nil {
		return nil, err
	}
	if m.Wo, err = nn.NewLinear(b, name+".wo", q, d, lo...); err != nil {
		return nil, err
	}
	return m, nil
}

// Config returns the configuration with its defaults filled in.
func (m *MHA) Config() MHAConfig { return m.cfg }

// Name returns the parameter prefix.
func (m *MHA) Name() string { return m.name }

// Dtype returns the parameters' dtype.
func (m *MHA) Dtype() tensor.Dtype { return m.dt }

// RoPE returns the rotary table the layer uses.
func (m *MHA) RoPE() *nn.RoPE { return m.rope }

// Params returns W_Q, W_K, W_V, W_O.
func (m *MHA) Params() G.Nodes { return G.Nodes{m.Wq.W, m.Wk.W, m.Wv.W, m.Wo.W} }

// Scale returns the softmax scale 1/√d_h.
func (m *MHA) Scale() float64 { return 1 / math.Sqrt(float64(m.cfg.HeadDim)) }

// Forward applies the layer to x of shape (B, T, d) — a batch of B sequences — or (T, d), one sequence; the
// result has x's shape. Row t of every sequence is at position t (RoPE) and attends to rows 0..t.
func (m *MHA) Forward(x *G.Node) (*G.Node, error) {
	B, T, x2, err := flatten(x, m.cfg.Dim, m.cfg.MaxPos, m.dt)
	if err != nil {
		return nil, errors.Wrapf(err, "attention.MHA %s", m.name)
	}
	c := m.cfg
	nh, ng, dh := c.Heads, c.KVHeads, c.HeadDim
	r := nh / ng
	proj := func(l *nn.Linear, H int, rope bool) (*G.Node, error) {
		y, err := l.Forward(x2)
		if err != nil {
			return nil, err
		}
		if y, err = splitHeads(y, B, T, H, dh, 0, dh); err != nil {
			return nil, err
		}
		if rope {
			return m.rope.Apply(y, 0)
		}
		return y, nil
	}
	q, err := proj(m.Wq, nh, true) // (B·n_h, T, d_h)
	if err != nil {
		return nil, err
	}
	k, err := proj(m.Wk, ng, true) // (B·n_g, T, d_h)
	if err != nil {
		return nil, err
	}
	v, err := proj(m.Wv, ng, false)
	if err != nil {
		return nil, err
	}
	if r > 1 { // a group's r query heads stacked along the sequence axis; feeds only BatchedMatMul
		if q, err = G.Reshape(q, tensor.Shape{B * ng, r * T, dh}); err != nil {
			return nil, err
		}
	}
	s, err := G.BatchedMatMul(q, k, false, true) // (B·n_g, r·T, T)
	if err != nil {
		return nil, err
	}
	p, err := causalSoftmax(s, m.Scale(), B*ng, r, T)
	if err != nil {
		return nil, err
	}
	o, err := G.BatchedMatMul(p, v) // (B·n_g, r·T, d_h) = (B·n_h, T, d_h)
	if err != nil {
		return nil, err
	}
	if o, err = mergeHeads(o, B, T, nh, dh); err != nil { // (B·T, n_h·d_h)
		return nil, err
	}
	y, err := m.Wo.Forward(o)
	if err != nil {
		return nil, err
	}
	return unflatten(y, x)
}

// flatten checks x (B, T, d) or (T, d) and returns B, T and x as a (B·T, d) node.
func flatten(x *G.Node, d, maxPos int, dt tensor.Dtype) (B, T int, x2 *G.Node, err error) {
	if x == nil {
		return 0, 0, nil, errors.New("nil input")
	}
	if x.Dtype() != dt {
		return 0, 0, nil, errors.Errorf("input is %v, parameters are %v", x.Dtype(), dt)
	}
	sh := x.Shape()
	switch {
	case sh.Dims() == 2 && sh[1] == d:
		B, T, x2 = 1, sh[0], x
	case sh.Dims() == 3 && sh[2] == d:
		B, T = sh[0], sh[1]
		// Gorgonia's Reshape is a view; it feeds only matrix products here, which never write it.
		if x2, err = G.Reshape(x, tensor.Shape{B * T, d}); err != nil {
			return 0, 0, nil, err
		}
	default:
		return 0, 0, nil, errors.Errorf("want x of shape (B, T, %d) or (T, %d), got %v", d, d, sh)
	}
	if T > maxPos {
		return 0, 0, nil, errors.Errorf("sequence length %d exceeds the RoPE table (%d positions)", T, maxPos)
	}
	if B*T < 2 {
		return 0, 0, nil, errors.New("a single token: use a cache's Step for decoding")
	}
	return B, T, x2, nil
}

// unflatten gives y (B·T, d) the leading shape of x, with a copying reshape (nn.Reshape) so that callers
// may use the result as the left operand of an elementwise op.
func unflatten(y, x *G.Node) (*G.Node, error) {
	if x.Dims() == 2 {
		return y, nil
	}
	sh := x.Shape()
	return nn.Reshape(y, sh[0], sh[1], y.Shape()[1])
}

// causalSoftmax returns softmax_s(scale·S + M) for scores S of shape (n, r·T, T) whose row i is query
// position i mod T (r query heads stacked per batch entry), with M the constant causal mask.
func causalSoftmax(s *G.Node, scale float64, n, r, T int) (*G.Node, error) {
	g, dt := s.Graph(), s.Dtype()
	var err error
	if s, err = G.Mul(s, scalar(dt, scale)); err != nil {
		return nil, err
	}
	mask := tensor.New(tensor.WithShape(n, r*T, T), tensor.Of(dt))
	switch dt {
	case tensor.Float64:
		fillMask(mask.Data().([]float64), r*T, T)
	case tensor.Float32:
		fillMask(mask.Data().([]float32), r*T, T)
	default:
		return nil, errors.Errorf("dtype %v not supported", dt)
	}
	if s, err = G.Add(s, g.Constant(mask)); err != nil {
		return nil, err
	}
	return G.SoftMax(s, 2)
}

func fillMask[T float](m []T, rows, T_ int) {
	for i := 0; i < len(m); i++ {
		t, s := (i/T_)%rows%T_, i%T_
		if s > t {
			m[i] = MaskValue
		}
	}
}

func scalar(dt tensor.Dtype, v float64) *G.Node {
	if dt == tensor.Float32 {
		return G.NewConstant(float32(v))
	}
	return G.NewConstant(v)
}
