# Data: raw archives (downloaded, md5-checked) or the synthetic stand-in -> prepared datasets -> fold splits;
# ImageNet weights (downloaded) or, in the demo, a small pretraining of the tiny backbones on synthetic objects.


rule download:
    output:
        touch("<resources>/downloads/{artifact}.done"),
    params:
        mirror=mirror_arg,
        out_dir=pv("<resources>/downloads"),
    log:
        "<logs>/download/{artifact}.log",
    localrule: True
    retries: 2
    shell:
        "{SVF} download {wildcards.artifact} --out-dir {params.out_dir} {params.mirror} > {log} 2>&1"


rule synthesize:
    output:
        touch("<resources>/raw/{dataset}/.complete"),
    params:
        sizes=lambda w: config["data"]["synthetic"][w.dataset],
        seed=config["data"].get("synthetic", {}).get("seed", 0),
        min_pixels=config["data"]["min_pixels"],
        out=lambda w, output: str(Path(output[0]).parent),
    log:
        "<logs>/synthesize/{dataset}.log",
    localrule: True
    shell:
        "{SVF} synth {wildcards.dataset} --out {params.out} --train-per-class {params.sizes[train_per_class]} "
        "--val-per-class {params.sizes[val_per_class]} --image-size {params.sizes[size]} "
        "--min-pixels {params.min_pixels} --seed {params.seed} > {log} 2>&1"


rule prepare:
    input:
        unpack(raw_inputs),
    output:
        "<resources>/data/{dataset}/dataset.json",
    params:
        raw=lambda w: pv(f"<resources>/raw/{w.dataset}" if config["data"]["source"] == "synthetic"
                         else "<resources>/downloads"),
        out=lambda w, output: str(Path(output[0]).parent),
        aug=lambda w: (f"--segmentation-class-aug {shlex.quote(config['data']['segmentation_class_aug'])}"
                       if w.dataset == "pascal" and config["data"]["segmentation_class_aug"] else ""),
        val_order=config["data"]["coco_val_order"],
    threads: res("cpu", "threads")
    log:
        "<logs>/prepare/{dataset}.log",
    shell:
        "{SVF} prepare {wildcards.dataset} --raw {params.raw} --out {params.out} "
        "--workers {threads} {params.aug} --coco-val-order {params.val_order} --quiet > {log} 2>&1"


rule splits:
    input:
        "<resources>/data/{dataset}/dataset.json",
    output:
        "<resources>/splits/{dataset}/splits_summary.json",
    params:
        min_pixels=config["data"]["min_pixels"],
        min_pool=config["data"]["min_pool_size"],
        coco_split=config["data"]["coco_split"],
        root=lambda w, input: str(Path(input[0]).parent),
        out=lambda w, output: str(Path(output[0]).parent),
    threads: res("cpu", "threads")
    log:
        "<logs>/splits/{dataset}.log",
    shell:
        "{SVF} splits --dataset-root {params.root} --out {params.out} "
        "--min-pixels {params.min_pixels} --min-pool-size {params.min_pool} --coco-split {params.coco_split} "
        "--workers {threads} --quiet > {log} 2>&1"



if config["weights"]["source"] == "download":

    rule imagenet_weights:
        output:
            "<resources>/weights/{backbone}.pth",
        params:
            artifact=lambda w: "vgg16_bn" if w.backbone == "vgg16" else IMAGENET_RESNET50[config["weights"]["resnet50"]],
            mirror=mirror_arg,
            out_dir=pv("<resources>/downloads"),
        log:
            "<logs>/weights/{backbone}.log",
        localrule: True
        retries: 2
        shell:
            "{SVF} download {params.artifact} --out-dir {params.out_dir} {params.mirror} --copy-to {output} "
            "> {log} 2>&1"

else:

    rule pretrain_weights:
        output:
            "<resources>/weights/{backbone}.pth",
        params:
            spec=lambda w: canonical_json(pretrain_spec(config, w.backbone)),
        threads: res("train", "threads")
        log:
            "<logs>/weights/{backbone}.log",
        benchmark:
            "<benchmarks>/weights/{backbone}.tsv"
        shell:
            "{SVF} pretrain --spec {params.spec:q} --out {output} --threads {threads} > {log} 2>&1"
