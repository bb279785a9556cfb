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
        touch(paths.RAW_MARKER),
    log:
        "<logs>/synthesize/{dataset}.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        sizes=lambda w: config["data"]["synthetic"][w.dataset],
        seed=config["data"].get("synthetic", {}).get("seed", 0),
        min_pixels=config["data"]["min_pixels"],
        out=expanded(paths.RAW_DIR),
    shell:
        "svf --log {log} synth {wildcards.dataset} --out {params.out} "
        "--train-per-class {params.sizes[train_per_class]} "
        "--val-per-class {params.sizes[val_per_class]} --image-size {params.sizes[size]} "
        "--min-pixels {params.min_pixels} --seed {params.seed}"


rule prepare:
    input:
        unpack(raw_inputs),
    output:
        paths.DATASET_JSON,
    log:
        "<logs>/prepare/{dataset}.log",
    conda:
        CONDA_ENV
    threads: res("cpu", "threads")
    params:
        raw=raw_dir_of,
        out=expanded(paths.DATASET_ROOT),
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
        paths.DATASET_JSON,
    output:
        paths.SPLITS_JSON,
    log:
        "<logs>/splits/{dataset}.log",
    conda:
        CONDA_ENV
    threads: res("cpu", "threads")
    params:
        min_pixels=config["data"]["min_pixels"],
        min_pool=config["data"]["min_pool_size"],
        coco_split=config["data"]["coco_split"],
        root=expanded(paths.DATASET_ROOT),
        out=expanded(paths.SPLITS_DIR),
    shell:
        "svf --log {log} splits --dataset-root {params.root} --out {params.out} "
        "--min-pixels {params.min_pixels} --min-pool-size {params.min_pool} --coco-split {params.coco_split} "
        "--workers {threads} --quiet"


if config["weights"]["source"] == "download":

    rule imagenet_weights:
        output:
            paths.WEIGHTS_FILE,
        log:
            "<logs>/weights/{backbone}.log",
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
            paths.WEIGHTS_FILE,
        log:
            "<logs>/weights/{backbone}.log",
        benchmark:
            "<benchmarks>/weights/{backbone}.tsv"
        conda:
            CONDA_ENV
        threads: res("train", "threads")
        params:
            spec=lambda w: canonical_json(pretrain_spec(config, w.backbone)),
        shell:
            "svf --log {log} pretrain --spec {params.spec:q} --out {output} --threads {threads}"
