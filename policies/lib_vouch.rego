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

# The images, once each, as external_data keys.
images := [image | image_set[image]]
