package attention

import (
	"math"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/nn"
)

// MLAConfig sizes a multi-head latent attention layer. Field names follow DeepSeek's ModelArgs
// (q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim); the comments give the
// DeepSeek-V2 paper's symbols.
type MLAConfig struct {
	// Dim is the model width d.
	Dim int
	// Heads is n_h.
	Heads int
	// QRank is d′_c, the rank of the query compression (q_lora_rank); 0 means a plain query projection
	// W_Q (d, n_h(d_h + d_h^R)), DeepSeek-V2-Lite's choice.
	QRank int
	// KVRank is d_c, the width of the cached latent c_KV (kv_lora_rank).
	KVRank int
	// HeadDim is d_h, the per-head width of the compressed (non-rotary) queries and keys (qk_nope_head_dim).
	HeadDim int
	// RoPEDim is d_h^R, the width of the decoupled rotary query per head and of the one rotary key shared by
	// all heads (qk_rope_head_dim); even.
	RoPEDim int
	// VHeadDim is the per-head value width (v_head_dim); 0 means HeadDim (the paper's d_h).
	VHeadDim int
	// MaxPos is the RoPE table length; 0 means DefaultMaxPos.
	MaxPos int
	// RoPEBase is θ; 0 means nn.DefaultRoPEBase.
	RoPEBase float64
	// Pairing is RoPE's pairing; the zero value, nn.Interleaved, is DeepSeek's.
	Pairing nn.Pairing
	// Eps is the ε of q_norm and kv_norm; 0 means nn.DefaultEps.
	Eps float64
	// Init initialises the projection matrices; nil means nn.Linear's default U(±1/√in).
	Init nn.Init
}

func (c MLAConfig) withDefaults() (MLAConfig, error) {
	if c.VHeadDim == 0 {
		c.VHeadDim = c.HeadDim
	}
	if c.MaxPos == 0 {
		c.MaxPos = DefaultMaxPos
	}
	if c.Eps == 0 {
		c.Eps = nn.DefaultEps
	}
	switch {
	case c.Dim <= 0 || c.Heads <= 0 || c.KVRank <= 0 || c.HeadDim <= 0 || c.RoPEDim <= 0 || c.VHeadDim <= 0 ||
		c.QRank < 0 || c.MaxPos <= 0 || !(c.Eps > 0):
		return c, errors.Errorf("attention: bad MLA config %+v", c)
	case c.RoPEDim%2 != 0:
		return c, errors.Errorf("attention: RoPEDim %d must be even", c.RoPEDim)
	}
	return c, nil
}

// CacheValuesPerToken returns what MLA's absorbed cache holds per token for this layer: the latent c_KV and
// the rotary key k^R, d_c + d_h^R values.
func (c MLAConfig) CacheValuesPerToken() int { return c.KVRank + c.RoPEDim }

// MLA is multi-head latent attention as defined in DeepSeek-AI, "DeepSeek-V2: A Strong, Economical, and
// Efficient Mixture-of-Experts Language Model" (arXiv 2405.04434, §2.1) and kept in "DeepSeek-V3 Technical
// Report" (arXiv 2412.19437), following the reference code deepseek-ai/DeepSeek-V3 inference/model.py
// (class MLA). In row-vector form (W stored (in, out)), for a token h_t:
//
//	[c_KV | k^R] = h_t·W_KVa                     W_KVa = wkv_a (d, d_c + d_h^R): W_DKV and W_KR side by side
//	c_KV = kv_norm(c_KV);  k^R_t = RoPE(k^R)     the latent and the ONE rotary key shared by all heads
//	[k^C_i | v^C_i] = c_KV·W_KVb[head i]         W_KVb = wkv_b (d_c, n_h(d_h + d_v)): W_UK and W_UV per head
//	q = q_norm(h_t·W_DQ)·W_UQ  or  h_t·W_Q       wq_a (d, d′_c), wq_b (d′_c, n_h(d_h + d_h^R)), or wq
//	[q^C_i | q^R_i] = q[head i];  q^R_i = RoPE(q^R_i)
//	o_t,i = Σ_{s≤t} softmax_s((q^C_i·k^C_s,i + q^R_i·k^R_s)/√(d_h + d_h^R)) v^C_s,i
//	u_t = [o_t,1 … o_t,n_h]·W_O                   wo (n_h d_v, d)
//
// Parameters are "<name>.wq.weight" or "<name>.wq_a.weight", "<name>.q_norm.weight", "<name>.wq_b.weight";
// "<name>.wkv_a.weight", "<name>.kv_norm.weight", "<name>.wkv_b.weight", "<name>.wo.weight" (DeepSeek's
// names; a PyTorch checkpoint's matrices are the transposes). Within a head's block of wq/wq_b the d_h
// compressed features come first, then the d_h^R rotary ones; within wkv_b's, the d_h key features, then
// the d_v value features.
//
// Forward is the training path: explicit per-head keys k^C = W_UK c_KV and values v^C = W_UV c_KV as a
// Gorgonia graph (DeepSeek's attn_impl "naive"). The rotary scores use the shared key without broadcasting:
// the rotary queries (B·n_h, T, d_h^R) are viewed as (B, n_h·T, d_h^R) and multiplied by the keys
// (B, T, d_h^R). NewMLACache is the absorbed inference path ("absorb"): it caches only c_KV and k^R.
type MLA struct {
	// Wq is the plain query projection (nil with query compression); WqA, WqB and QNorm the compressed
	// query's down and up projections and norm (nil without).
	Wq, WqA, WqB *nn.Linear
	QNorm        *nn.RMSNorm
	// WkvA is the joint down projection of the latent and the rotary key, KVNorm the latent's norm, WkvB
	// the keys' and values' up projections, Wo the output projection.
	WkvA, WkvB, Wo *nn.Linear
	KVNorm         *nn.RMSNorm
	cfg            MLAConfig
	name           string
	dt             tensor.Dtype
	rope           *nn.RoPE
}

// NewMLA creates the parameters of an MLA layer under the prefix name. The norms' gains start at 1.
func NewMLA(b *nn.Builder, name string, cfg MLAConfig) (*MLA, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rope, err := nn.NewRoPE(cfg.RoPEDim, cfg.MaxPos, cfg.RoPEBase, cfg.Pairing)
	if err != nil {
		return nil, err
	}
	var lo []nn.Option
	if cfg.Init != nil {
		lo = append(lo, nn.WithInit(cfg.Init))
	}
	m := &MLA{cfg: cfg, name: name, dt: b.Dtype(), rope: rope}
	d, nh := cfg.Dim, cfg.Heads
	qOut := nh * (cfg.HeadDim + cfg.RoPEDim)
	if cfg.QRank == 0 {
		if m.Wq, err = nn.NewLinear(b, name+".wq", d, qOut, lo...); err != nil {
			return nil, err
		}
	} else {
		if m.WqA, err = nn.NewLinear(b, name+".wq_a", d, cfg.QRank, lo...); err != nil {
			return nil, err
		}
		if m.QNorm, err = nn.NewRMSNorm(b, name+".q_norm", cfg.QRank, nn.WithEps(cfg.Eps)); err != nil {
			return nil, err
		}
		if m.WqB, err = nn.NewLinear(b, name+".wq_b", cfg.QRank, qOut, lo...); err != nil {
			return nil, err
		}
	}
	if m.WkvA, err = nn.NewLinear(b, name+".wkv_a", d, cfg.KVRank+cfg.RoPEDim, lo...); err != nil {
		return nil, err
	}
	if m.KVNorm, err = nn.NewRMSNorm(b, name+".kv_norm", cfg.KVRank, nn.WithEps(cfg.Eps)); err != nil {
		return nil, err
	}
	if m.WkvB, err = nn.NewLinear(b, name+".wkv_b", cfg.KVRank, nh*(cfg.HeadDim+cfg.VHeadDim), lo...); err != nil {
		return nil, err
	}
	if m.Wo, err = nn.NewLinear(b, name+".wo", nh*cfg.VHeadDim, d, lo...); err != nil {
		return nil, err
	}
	return m, nil
}

// Config returns the configuration with its defaults filled in.
func (m *MLA) Config() MLAConfig { return m.cfg }

// Name returns the parameter prefix.
func (m *MLA) Name() string { return m.name }

// Dtype returns the parameters' dtype.
func (m *MLA) Dtype() tensor.Dtype { return m.dt }

// RoPE returns the rotary table of the decoupled query and key.
func (m *MLA) RoPE() *nn.RoPE { return m.rope }

// Scale returns the softmax scale 1/√(d_h + d_h^R) (DeepSeek-V3's YaRN mscale is out of scope).
func (m *MLA) Scale() float64 { return 1 / math.Sqrt(float64(m.cfg.HeadDim+m.cfg.RoPEDim)) }

// Params returns every parameter in creation order: the query's (wq, or wq_a, q_norm, wq_b), then wkv_a,
// kv_norm, wkv_b, wo.
func (m *MLA) Params() G.Nodes {
	var ps G.Nodes
	if m.Wq != nil {
		ps = append(ps, m.Wq.W)
	} else {
		ps = append(ps, m.WqA.W, m.QNorm.Gamma, m.WqB.W)
	}
	return append(ps, m.WkvA.W, m.KVNorm.Gamma, m.WkvB.W, m.Wo.W)
}

// ParamCount returns the number of parameters: d·d′_c + d′_c + d′_c·n_h(d_h + d_h^R) (or d·n_h(d_h + d_h^R))
// + d(d_c + d_h^R) + d_c + d_c·n_h(d_h + d_v) + n_h d_v·d (REFERENCE §2.7, with the two gains).
func (m *MLA) ParamCount() int {
	n := 0
	for _, p := range m.Params() {
		n += p.Shape().TotalSize()
	}
	return n
}

// Forward applies the training path to x of shape (B, T, d) or (T, d) (rows at positions 0..T−1, each
// attending to itself and the rows before it); the result has x's shape.
func (m *MLA) Forward(x *G.Node) (*G.Node, error) {
	B, T, x2, err := flatten(x, m.cfg.Dim, m.cfg.MaxPos, m.dt)
	if err != nil {
		return nil, errors.Wrapf(err, "attention.MLA %s", m.name)
	}
	c := m.cfg
	nh, dh, dr, dv, dc := c.Heads, c.HeadDim, c.RoPEDim, c.VHeadDim, c.KVRank
	var q *G.Node
	if m.Wq != nil {
		if q, err = m.Wq.Forward(x2); err != nil {
			return nil, err
		}
	} else {
		a, err := m.WqA.Forward(x2)
		if err != nil {
			return nil, err
		}
		if a, err = m.QNorm.Forward(a); err != nil {
			return nil, err
		}
		if q, err = m.WqB.Forward(a); err != nil {
			return nil, err
		}
	}
	qC, err := splitHeads(q, B, T, nh, dh+dr, 0, dh) // (B·n_h, T, d_h)
	if err != nil {
		return nil, err
	}
	qR, err := splitHeads(q, B, T, nh, dh+dr, dh, dh+dr) // (B·n_h, T, d_h^R)
	if err != nil {
		return nil, err
	}
	if qR, err = m.rope.Apply(qR, 0); err != nil {
		return nil, err
	}
	kv, err := m.WkvA.Forward(x2) // (B·T, d_c + d_h^R)
	if err != nil {
		return nil, err
	}
	lat, err := splitHeads(kv, B, T, 1, dc+dr, 0, dc) // (B, T, d_c)
	if err != nil {
		return nil, err
	}
	if lat, err = m.KVNorm.Forward(lat); err != nil {
		return nil, err
	}
	kR, err := splitHeads(kv, B, T, 1, dc+dr, dc, dc+dr) // (B, T, d_h^R)
	if err != nil {
		return nil, err
	}
	if kR, err = m.rope.Apply(kR, 0); err != nil {
		return nil, err
	}
	if lat, err = G.Reshape(lat, tensor.Shape{B * T, dc}); err != nil { // feeds only the product below
		return nil, err
	}
	kvb, err := m.WkvB.Forward(lat) // (B·T, n_h(d_h + d_v))
	if err != nil {
		return nil, err
	}
	kC, err := splitHeads(kvb, B, T, nh, dh+dv, 0, dh) // (B·n_h, T, d_h)
	if err != nil {
		return nil, err
	}
	vC, err := splitHeads(kvb, B, T, nh, dh+dv, dh, dh+dv) // (B·n_h, T, d_v)
	if err != nil {
		return nil, err
	}
	sC, err := G.BatchedMatMul(qC, kC, false, true) // (B·n_h, T, T)
	if err != nil {
		return nil, err
	}
	qR3, err := G.Reshape(qR, tensor.Shape{B, nh * T, dr}) // feeds only the product below
	if err != nil {
		return nil, err
	}
	sR, err := G.BatchedMatMul(qR3, kR, false, true) // (B, n_h·T, T): one key for all heads
	if err != nil {
		return nil, err
	}
	if sR, err = nn.Reshape(sR, B*nh, T, T); err != nil {
		return nil, err
	}
	s, err := G.Add(sC, sR)
	if err != nil {
		return nil, err
	}
	p, err := causalSoftmax(s, m.Scale(), B*nh, 1, T)
	if err != nil {
		return nil, err
	}
	o, err := G.BatchedMatMul(p, vC) // (B·n_h, T, d_v)
	if err != nil {
		return nil, err
	}
	if o, err = mergeHeads(o, B, T, nh, dv); err != nil {
		return nil, err
	}
	y, err := m.Wo.Forward(o)
	if err != nil {
		return nil, err
	}
	return unflatten(y, x)
}
