"""Scale-out (issue 16): the Ray build engine (ray_build) and the Milvus serving backend (milvus)."""
