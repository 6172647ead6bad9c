// Hierarchical interaction regression, per-row likelihood, non-centred weights (bayesmoe's
// InteractionRegression(collapsed=False) with its default priors).
data {
  int<lower=1> n;
  int<lower=1> p;
  int<lower=0> q;
  matrix[n, p] X;
  matrix[n, q] X_int;
  vector[n] y;
  real m0;
  real<lower=0> s0;
  real<lower=0> s_y;
}
parameters {
  real intercept;
  real<lower=0> tau_base;
  real<lower=0> tau_interaction;
  real<lower=0> sigma;
  vector[p] beta_base_offset;
  vector[q] beta_interaction_offset;
}
model {
  intercept ~ normal(m0, s0);
  tau_base ~ cauchy(0, s_y);
  tau_interaction ~ cauchy(0, s_y);
  sigma ~ normal(0, s_y);
  beta_base_offset ~ std_normal();
  beta_interaction_offset ~ std_normal();
  y ~ normal_id_glm(X, intercept + X_int * (tau_interaction * beta_interaction_offset),
                    tau_base * beta_base_offset, sigma);
}
