# Data: raw archives (downloaded, md5-checked) or the synthetic stand-in -> prepared datasets -> fold splits;
# ImageNet weights (downloaded) or, in the demo, a small pretraining of the tiny backbones on synthetic objects.


rule download:
    output:
        touch(paths.DOWNLOAD_MARKER),
    log:
        "<logs>/download/{artifact}.log",
    retries: 2
    localrule: True
    conda:
        CONDA_ENV
    params:
        mirror=mirror_arg,
        out_dir=expanded(paths.DOWNLOADS_DIR),
    shell:
        "svf --log {log} download {wildcards.artifact} --out-dir {params.out_dir} {params.mirror}"


rule synthesize:
    output:
        touch(WORLD.raw_marker),
    log:
        f"<logs>/synthesize/{WORLD.log_prefix}{{dataset}}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        sizes=lambda w: config["data"]["synthetic"][w.dataset],
        seed=synthetic_seed,
        looks=synthetic_looks(config),
        min_pixels=config["data"]["min_pixels"],
        out=expanded(WORLD.raw_dir),
    shell:
        "svf --log {log} synth {wildcards.dataset} --out {params.out} "
        "--train-per-class {params.sizes[train_per_class]} "
        "--val-per-class {params.sizes[val_per_class]} --image-size {params.sizes[size]} "
        "--min-pixels {params.min_pixels} --seed {params.seed} --looks {params.looks}"


rule prepare:
    input:
        unpack(raw_inputs),
    output:
        WORLD.dataset_json,
    log:
        f"<logs>/prepare/{WORLD.log_prefix}{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: res("cpu", "threads")
    params:
        raw=raw_dir_of,
        out=expanded(WORLD.dataset_root),
        aug=lambda w: (
            f"--segmentation-class-aug {shlex.quote(config['data']['segmentation_class_aug'])}"
            if w.dataset == "pascal" and config["data"]["segmentation_class_aug"]
            else ""
        ),
        val_order=config["data"]["coco_val_order"],
    shell:
        "svf --log {log} prepare {wildcards.dataset} --raw {params.raw} --out {params.out} "
        "--workers {threads} {params.aug} --coco-val-order {params.val_order} --quiet"


rule splits:
    input:
        WORLD.dataset_json,
    output:
        WORLD.splits_json,
    log:
        f"<logs>/splits/{WORLD.log_prefix}{{dataset}}.log",
    conda:
        CONDA_ENV
    threads: res("cpu", "threads")
    params:
        min_pixels=config["data"]["min_pixels"],
        min_pool=config["data"]["min_pool_size"],
        coco_split=config["data"]["coco_split"],
        root=expanded(WORLD.dataset_root),
        out=expanded(WORLD.splits_dir),
    shell:
        "svf --log {log} splits --dataset-root {params.root} --out {params.out} "
        "--min-pixels {params.min_pixels} --min-pool-size {params.min_pool} --coco-split {params.coco_split} "
        "--workers {threads} --quiet"


if config["weights"]["source"] == "download":

    rule imagenet_weights:
        output:
            WORLD.weights_file,
        log:
            f"<logs>/weights/{WORLD.log_prefix}{{backbone}}.log",
        retries: 2
        localrule: True
        conda:
            CONDA_ENV
        params:
            artifact=lambda w: paths.imagenet_artifact(config, w.backbone),
            mirror=mirror_arg,
            out_dir=expanded(paths.DOWNLOADS_DIR),
        shell:
            "svf --log {log} download {params.artifact} --out-dir {params.out_dir} {params.mirror} --copy-to {output}"

else:

    rule pretrain_weights:
        output:
            WORLD.weights_file,
        log:
            f"<logs>/weights/{WORLD.log_prefix}{{backbone}}.log",
        benchmark:
            f"<benchmarks>/weights/{WORLD.log_prefix}{{backbone}}.tsv"
        conda:
            CONDA_ENV
        threads: res("train", "threads")
        params:
            spec=lambda w: canonical_json(pretrain_spec(config, w.backbone, world_seed(w))),
        shell:
            "svf --log {log} pretrain --spec {params.spec:q} --out {output} --threads {threads}"
