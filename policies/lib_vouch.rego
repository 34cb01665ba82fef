package lib.vouch

# Every container of the reviewed object: a Pod, a workload's pod template
# (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, ReplicationController), or a
# CronJob's job template.
pod_specs[spec] {
	spec := input.review.object.spec
	input.review.object.kind == "Pod"
}

pod_specs[spec] {
	spec := input.review.object.spec.template.spec
}

pod_specs[spec] {
	spec := input.review.object.spec.jobTemplate.spec.template.spec
}

container_fields := ["containers", "initContainers", "ephemeralContainers"]

image_set[image] {
	spec := pod_specs[_]
	field := container_fields[_]
	image := spec[field][_].image
}

# The images, once each.
images := [image | image_set[image]]

# The namespace of the reviewed object: its metadata.namespace, else the admission
# request's namespace (Gatekeeper sets it for namespaced objects, and a CREATE's object may
# not carry one yet), else "" (none known: cluster-wide).
namespace = ns {
	ns := input.review.object.metadata.namespace
	is_string(ns)
	ns != ""
} else = ns {
	ns := input.review.namespace
	is_string(ns)
	ns != ""
} else = "" {
	true
}

# The external_data key of an image: "[<namespace>]<image>" when the object has a
# namespace, so vouch applies the trust policies of that namespace besides the cluster-wide
# ones (and Gatekeeper, which caches answers per (provider, key), keeps the answers of
# different namespaces apart); the bare image otherwise (cluster-wide policies only).
key_of(image) = key {
	namespace != ""
	key := concat("", ["[", namespace, "]", image])
} else = key {
	# No namespace, and an "image" that itself starts with a bracket: an empty prefix,
	# which vouch refuses, so it can never pass for a namespaced key.
	startswith(image, "[")
	key := concat("", ["[]", image])
} else = image {
	true
}

# The image each key stands for.
key_images := {key: image | image := image_set[_]; key := key_of(image)}

# The image a key of vouch's answer stands for, to name the image (not the key) in
# messages; a key that is not ours is shown as it is.
image_of(key) = image {
	image := key_images[key]
} else = key {
	true
}

# The keys both templates send to vouch-verify, one per image. Both must send exactly
# these: vouch coalesces the twin requests of one review only when their keys are equal.
keys := [key_of(image) | image := images[_]]
